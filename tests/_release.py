"""Release-format checkpoints built from this project's networks (tests only).

The release stores a generator as a plain state_dict whose per-class layers are
``<ace>.fc_mu{j}.weight`` / ``.bias`` for j < 19 (whatever ``label_nc``), and
which also holds tensors it never uses (``<ace>.Gsas.fc.*``);
``models/checkpoint_compat.py`` maps that layout back. :func:`to_release_layout`
writes it from a native state_dict, so tests can build release-format files of
any (small) configuration.
"""
import torch


def to_release_layout(native_state, n_release_classes=19):
    """Turn a native state_dict into the release layout (per-class fc_mu<j>, extra unused tensors).

    Rows j < J of the batched ``fc_mu`` become ``fc_mu{j}``; the release's extra
    layers (J <= j < ``n_release_classes``) and ``Gsas.fc`` get random values,
    which loading ignores.
    """
    out = {}
    for k, v in native_state.items():
        if k.endswith(".fc_mu.weight") or k.endswith(".fc_mu.bias"):
            ace, kind = k.rsplit(".fc_mu.", 1)
            for j in range(n_release_classes):
                out[f"{ace}.fc_mu{j}.{kind}"] = v[j].clone() if j < v.shape[0] else torch.randn_like(v[0])
        else:
            out[k] = v.clone()
        if k.endswith(".Gsas.coefficient.weight"):
            ace = k[: -len(".Gsas.coefficient.weight")]
            out[f"{ace}.Gsas.fc.weight"] = torch.randn(512, 1024)
            out[f"{ace}.Gsas.fc.bias"] = torch.randn(512)
    return out
