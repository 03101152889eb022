"""Compiled mask-restricted SLIC, bit-identical to scikit-image 0.26's ``slic``.

:func:`masked_slic` returns, for a float32 RGB image, the labels that
``skimage.segmentation.slic(rgb, mask=mask, n_segments=n_segments,
compactness=compactness, enforce_connectivity=False, start_label=1,
channel_axis=-1)[mask]`` gives, computed with numba on the masked pixels
only (tested with ``np.array_equal`` in tests/test_masked_slic.py; the
scikit-image version is pinned in requirements.txt). What is reproduced, why
it is faster and why its pruning of the search is exact: docs/spse.md,
"Backends".

Credit: this module follows the arithmetic of scikit-image's SLIC
(``skimage/segmentation/slic_superpixels.py`` and ``_slic.pyx``, version
0.26.0, Copyright 2009-2022 the scikit-image team, BSD 3-Clause License) step
for step; its notice is in LICENSES/scikit-image-BSD-3-Clause.txt.

Public API (``ValueError`` for arrays of other types or shapes, ``ImportError``
when numba is missing):

* ``AVAILABLE`` / ``IMPORT_ERROR``: whether numba could be imported (and why not);
* ``masked_slic(rgb, mask, n_segments=128, compactness=10, max_num_iter=10)``:
  ``rgb`` ``(H, W, 3)`` float32, ``mask`` ``(H, W)`` bool -> ``(N,)`` int32
  labels of the masked pixels in raster order (0 = reached by no centre,
  superpixels from 1);
* ``masked_slic_pixels(pix, ys, xs, shape, ...)``: the same from the gathered
  masked pixels and their coordinates; ``masked_slic_image(...)``: the same as
  an ``(H, W)`` label image;
* ``cache_dir()``: where compiled kernels are cached (``NUMBA_CACHE_DIR``, else
  ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``superstylenet/numba``); without
  a writable folder they are compiled in memory, with a warning;
* ``warm_up()``: compile (or load from the cache) all kernels now.
"""
import contextlib
import os
import warnings

import numpy as np
from scipy.spatial.distance import pdist, squareform
from skimage.color import rgb2lab
from skimage.util import regular_grid

try:
    import numba
except ImportError as e:  # numba is optional: spse.extractor falls back to scikit-image
    numba = None
    IMPORT_ERROR = e
else:
    IMPORT_ERROR = None

AVAILABLE = numba is not None

KMEANS_ITERATIONS = 5    # scikit-image calls kmeans2(..., iter=5)
DENSE_FACTOR = 10        # scikit-image's dense subset: (10 ** 2) * n_segments points in 2-D
SEED = 123               # scikit-image's RandomState seed for the mask seeding
CHUNK = 16               # pixels per chunk of a row run: the unit the SLIC search skips, and the
#                          vector width of its inner loops (the literal 16s in _visit, _chunk_max)


# ----------------------------------------------------------------------------
# Compilation and its cache
# ----------------------------------------------------------------------------
def cache_dir():
    """The folder the compiled kernels are cached in (docs/spse.md, "Compilation")."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "superstylenet", "numba")


@contextlib.contextmanager
def _numba_cache_dir(path):
    """Point numba's user-provided cache locator at ``path`` while functions are decorated.

    numba reads ``config.CACHE_DIR`` when a cached function is decorated (the
    locator keeps the path), so the setting is restored right afterwards and
    other numba users in the process are unaffected.
    """
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = path
    try:
        yield
    finally:
        numba.config.CACHE_DIR = saved


def _jit(fn=None, **extra):
    """``numba.njit`` without fastmath, numpy error model (0/0 -> NaN), cached when possible."""
    if fn is None:
        return lambda f: _jit(f, **extra)
    options = dict(nogil=True, error_model="numpy", fastmath=False, **extra)
    try:
        with _numba_cache_dir(cache_dir()):
            return numba.njit(cache=True, **options)(fn)
    except RuntimeError as e:  # numba: "cannot cache function ...: no locator available"
        warnings.warn(f"numba compile cache unavailable ({e}); compiling in memory", RuntimeWarning, stacklevel=2)
        return numba.njit(cache=False, **options)(fn)


def _identity(fn=None, **extra):
    return fn if fn is not None else _identity


jit = _jit if AVAILABLE else _identity


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------
@jit
def _chunks(ys, xs, size):
    """Split the masked pixels (raster order) into chunks of consecutive columns of one row.

    A chunk holds at most ``size`` pixels. Returns ``(row_ptr, c_x0, c_len,
    c_start)``: the chunks of row ``y`` are ``row_ptr[y]:row_ptr[y + 1]``
    (rows up to ``ys[-1]``); chunk ``c`` covers columns ``c_x0[c] ..
    c_x0[c] + c_len[c] - 1``, which are compact pixels ``c_start[c] ..``.
    """
    n = ys.shape[0]
    n_rows = ys[n - 1] + 1
    c_x0 = np.empty(n, np.int64)
    c_len = np.empty(n, np.int64)
    c_start = np.empty(n, np.int64)
    row_count = np.zeros(n_rows + 1, np.int64)
    c = -1
    for i in range(n):
        if c >= 0 and ys[i] == ys[i - 1] and xs[i] == xs[i - 1] + 1 and c_len[c] < size:
            c_len[c] += 1
        else:
            c += 1
            c_x0[c] = xs[i]
            c_len[c] = 1
            c_start[c] = i
            row_count[ys[i] + 1] += 1
    row_ptr = np.cumsum(row_count)
    return row_ptr, c_x0[:c + 1].copy(), c_len[:c + 1].copy(), c_start[:c + 1].copy()


@jit
def _kmeans(obs_y, obs_x, code_y, code_x, n_iter, block):
    """scipy ``kmeans2(obs, codes, iter=n_iter)`` on 2-D points (z = 0), in place on ``code_y/x``.

    Each iteration: every observation goes to its nearest code (squared
    distance ``dy*dy + dx*dx`` in float64, lowest index on ties), then every
    code with members moves to their mean. Candidates per block of
    ``block x block`` pixels (the pruning rule: docs/spse.md, "Backends").
    """
    n = obs_y.shape[0]
    k = code_y.shape[0]
    y0 = obs_y.min()
    x0 = obs_x.min()
    nbx = int((obs_x.max() - x0) // block) + 1
    nby = int((obs_y.max() - y0) // block) + 1
    bid = np.empty(n, np.int64)
    count = np.zeros(nby * nbx + 1, np.int64)
    for i in range(n):
        b = int((obs_y[i] - y0) // block) * nbx + int((obs_x[i] - x0) // block)
        bid[i] = b
        count[b + 1] += 1
    start = np.cumsum(count)
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[bid[i]]] = i
        fill[bid[i]] += 1
    # Extent of the points of each non-empty block.
    blocks = np.flatnonzero(count[1:])
    nb = blocks.shape[0]
    bymin = np.empty(nb)
    bymax = np.empty(nb)
    bxmin = np.empty(nb)
    bxmax = np.empty(nb)
    for q in range(nb):
        b = blocks[q]
        p = order[start[b]]
        bymin[q] = obs_y[p]
        bymax[q] = obs_y[p]
        bxmin[q] = obs_x[p]
        bxmax[q] = obs_x[p]
        for t in range(start[b] + 1, start[b + 1]):
            p = order[t]
            bymin[q] = min(bymin[q], obs_y[p])
            bymax[q] = max(bymax[q], obs_y[p])
            bxmin[q] = min(bxmin[q], obs_x[p])
            bxmax[q] = max(bxmax[q], obs_x[p])

    # The points in block order, contiguous, so that the distance loop runs over whole vectors.
    s_y = np.empty(n)
    s_x = np.empty(n)
    for t in range(n):
        s_y[t] = obs_y[order[t]]
        s_x[t] = obs_x[order[t]]
    best = np.empty(n)
    label = np.empty(n, np.int64)
    near = np.empty(k)
    far = np.empty(k)
    cand = np.empty(k + 1, np.int64)
    sum_y = np.empty(k)
    sum_x = np.empty(k)
    members = np.empty(k, np.int64)
    for _ in range(n_iter):
        for q in range(nb):
            b = blocks[q]
            y_lo = bymin[q]
            y_hi = bymax[q]
            x_lo = bxmin[q]
            x_hi = bxmax[q]
            for j in range(k):  # nearest and farthest squared distance of each code to the block
                cy = code_y[j]
                cx = code_x[j]
                dy = max(max(y_lo - cy, cy - y_hi), 0.0)
                dx = max(max(x_lo - cx, cx - x_hi), 0.0)
                near[j] = dy * dy + dx * dx
                fy = max(cy - y_lo, y_hi - cy)
                fx = max(cx - x_lo, x_hi - cx)
                far[j] = fy * fy + fx * fx
            bound = far[0]
            for j in range(1, k):
                bound = min(bound, far[j])
            limit = bound * (1.0 + 1e-6) + 1e-6
            nc = 0
            for j in range(k):  # branch-free compaction, ascending index
                cand[nc] = j
                nc += near[j] <= limit
            first = np.uint64(start[b])
            for t in range(start[b + 1] - start[b]):
                best[first + np.uint64(t)] = np.inf
                label[first + np.uint64(t)] = 0
            # Candidates in ascending index, strict "<": the first nearest code, as scipy's vq.
            for c in range(nc):
                j = cand[c]
                cy = code_y[j]
                cx = code_x[j]
                for t in range(start[b + 1] - start[b]):
                    i = first + np.uint64(t)
                    dy = cy - s_y[i]
                    dx = cx - s_x[i]
                    d = dy * dy + dx * dx
                    better = d < best[i]
                    best[i] = d if better else best[i]
                    label[i] = j if better else label[i]
        # Means of the members (sums of integer coordinates: exact in any order).
        sum_y[:] = 0.0
        sum_x[:] = 0.0
        members[:] = 0
        for i in range(n):
            j = label[i]
            members[j] += 1
            sum_y[j] += s_y[i]
            sum_x[j] += s_x[i]
        for j in range(k):
            if members[j] > 0:
                code_y[j] = sum_y[j] / members[j]
                code_x[j] = sum_x[j] / members[j]


@jit
def _nearest_centre_guess(c_x0, c_len, c_start, row_ptr, seg, n):
    """A starting label per pixel: the centre nearest (in space) to the middle of its chunk."""
    n_chunks = c_x0.shape[0]
    my = np.empty(n_chunks)
    mx = np.empty(n_chunks)
    for y in range(row_ptr.shape[0] - 1):
        for c in range(row_ptr[y], row_ptr[y + 1]):
            my[c] = y
            mx[c] = c_x0[c] + 0.5 * (c_len[c] - 1)
    best = np.full(n_chunks, np.inf)
    arg = np.zeros(n_chunks, np.int32)
    for k in range(seg.shape[0]):
        cy = float(seg[k, 0])
        cx = float(seg[k, 1])
        for c in range(n_chunks):
            dy = cy - my[c]
            dx = cx - mx[c]
            d = dy * dy + dx * dx
            better = d < best[c]  # NaN centres never win
            best[c] = d if better else best[c]
            arg[c] = np.int32(k + 1) if better else arg[c]
    guess = np.zeros(n, np.int32)
    for c in range(n_chunks):
        guess[c_start[c]:c_start[c] + c_len[c]] = arg[c]
    return guess


@jit
def _slic_pass(ys, xs, feat_l, feat_a, feat_b, row_ptr, c_x0, c_len, c_start, height, width,
               seg, step_y, step_x, weight, ignore_color, max_num_iter, guess, labels, dist):
    """One call of scikit-image's ``_slic_cython`` (2-D, mask given, not SLIC-zero), float32.

    ``ys``, ``xs``: ``(N,)`` coordinates of the masked pixels (raster order);
    ``feat_*``: their Lab / compactness values, padded to ``N + CHUNK``;
    ``row_ptr, c_x0, c_len, c_start``: their chunks (:func:`_chunks`);
    ``seg``: ``(K, 5)`` float32 centres ``[y, x, L, a, b]``, updated in place
    as scikit-image updates its ``segments``; ``guess``: starting labels for
    the first iteration (any labels: they only speed up the search);
    ``labels``: ``(N + CHUNK,)`` int32 output (0 = unassigned, else segment +
    1); ``dist``: ``(N + CHUNK,)`` float32 scratch.

    scikit-image visits, per iteration, every (segment, pixel) pair of each
    segment's window in segment order and keeps a strictly smaller distance,
    so a pixel ends with the smallest distance over the segments whose window
    holds it, the lowest segment index on ties, and keeps its previous label
    when no such distance is below +inf. The same minimum is found here in a
    different order, comparing ``(distance, index)`` pairs, which needs
    neither the order nor all pairs:

    * every chunk starts from the label its middle pixel had in the previous
      iteration (``guess`` in the first), for its pixels in that segment's
      window;
    * a segment skips a row when its squared row offset alone, widened by
      1e-5 relative (the float32 rounding of the spatial term is below 4e-7
      relative), exceeds the row's largest current distance over the spatial
      weight; in the other rows it skips the columns beyond the same bound
      (plus one column), and a chunk when the smallest spatial term over the
      chunk's columns in its window, computed with the same float32
      operations, exceeds the chunk's largest current distance (the colour
      term is >= 0 and float32 rounding is monotone, so no pixel of a
      skipped chunk could reach or tie its current distance).

    Distances are written with the same float32 operations in the same
    order as scikit-image; the colour-blind pass uses a colour term of
    ``0 + 0 + 0`` (features and centre colours taken as 0), and ``d + 0.0 ==
    d``. The vector loops always work on ``CHUNK`` lanes (the arrays are
    padded) so that LLVM emits whole vector operations; lanes outside the
    chunk's window write back the values they read. Everything is written in
    this one function: calls to other compiled functions with array
    arguments cost atomic reference counting.
    """
    n = ys.shape[0]
    k_total = seg.shape[0]
    n_rows = row_ptr.shape[0] - 1
    n_chunks = c_x0.shape[0]
    inf = np.float32(np.inf)  # scikit-image stores DBL_MAX in float32: +inf
    zero = np.float32(0.0)
    two_sy = np.float32(2 * step_y)
    two_sx = np.float32(2 * step_x)
    one = np.float32(1.0)
    wy0 = np.empty(k_total, np.int64)
    wy1 = np.empty(k_total, np.int64)
    wx0 = np.empty(k_total, np.int64)
    wx1 = np.empty(k_total, np.int64)
    # The colour term of the distance: zero features in the colour-blind pass.
    if ignore_color:
        dl = np.zeros_like(feat_l)
        da = dl
        db = dl
    else:
        dl = feat_l
        da = feat_a
        db = feat_b
    bits = dist.view(np.int32)
    # Upper bounds of the current distances per chunk and per row, kept as int32 bits
    # (non-negative float32 values order like int32) and read through float32 views.
    cmax_bits = np.empty(n_chunks, np.int32)
    cmax = cmax_bits.view(np.float32)
    rmax_bits = np.empty(n_rows, np.int32)
    rmax = rmax_bits.view(np.float32)
    prune_rows = weight < inf  # the row test needs a finite spatial weight
    to_window = float(1.0 + 1e-5) / float(weight)
    rows = np.empty(n_rows, np.int64)
    row_dy = np.empty(n_rows, np.float32)
    counts = np.empty(k_total, np.int64)
    sums = np.empty((k_total, 5), np.float32)
    labels[:] = 0
    for it in range(max_num_iter):
        # Windows of this iteration; an empty segment (NaN centre) has none, as in scikit-image.
        for k in range(k_total):
            cy = seg[k, 0]
            cx = seg[k, 1]
            if cy != cy or cx != cx:
                wy0[k] = 0
                wy1[k] = 0
                wx0[k] = 0
                wx1[k] = 0
                continue
            lo = cy - two_sy
            wy0[k] = int(lo) if lo > 0 else 0
            hi = (cy + two_sy) + one
            wy1[k] = min(int(hi) if hi < height else height, n_rows)
            lo = cx - two_sx
            wx0[k] = int(lo) if lo > 0 else 0
            hi = (cx + two_sx) + one
            wx1[k] = int(hi) if hi < width else width
            if wy0[k] >= wy1[k] or wx0[k] >= wx1[k]:
                wy0[k] = 0
                wy1[k] = 0

        # Pairs (chunk, segment) are visited in two sweeps: sweep 0 offers every chunk the segment
        # its middle pixel had before; sweep 1 offers every segment the chunks of its window.
        dist[:] = inf
        cmax[:] = inf  # chunks that sweep 0 does not reach keep +inf
        for sweep in range(2):
            for outer in range(n_rows if sweep == 0 else k_total):
                if sweep == 0:
                    y = outer
                    c_first = row_ptr[y]
                    c_stop = row_ptr[y + 1]
                    n_sel = 1
                else:
                    k = outer
                    if wy0[k] >= wy1[k]:
                        continue
                    cy = seg[k, 0]
                    cx = seg[k, 1]
                    x_round = int(cx + np.float32(0.5))  # cx >= 0; cx + 0.5 is exact below 2**22
                    n_sel = 0
                    for y in range(wy0[k], wy1[k]):  # rows that can hold a better pixel (compacted)
                        dy = cy - np.float32(y)
                        dy = dy * dy
                        rows[n_sel] = y
                        row_dy[n_sel] = dy
                        n_sel += (float(dy) <= float(rmax[y]) * to_window) | (not prune_rows)
                for q in range(n_sel):
                    if sweep == 1:
                        y = rows[q]
                        dy = row_dy[q]
                        x_lo = wx0[k]
                        x_hi = wx1[k]
                        bound = float(rmax[y]) * to_window
                        if prune_rows and bound < np.inf:
                            # Columns with (cx - x)**2 <= bound - dy**2, plus one each side.
                            r = np.sqrt(bound - float(dy))
                            x_lo = max(x_lo, int(np.floor(float(cx) - r)) - 1)
                            x_hi = min(x_hi, int(np.floor(float(cx) + r)) + 2)
                            if x_lo >= x_hi:
                                continue
                        # First chunk of the row ending after x_lo (chunks are sorted by column).
                        c_first = row_ptr[y]
                        hi_c = row_ptr[y + 1]
                        while c_first < hi_c:
                            mid = (c_first + hi_c) // 2
                            if c_x0[mid] + c_len[mid] <= x_lo:
                                c_first = mid + 1
                            else:
                                hi_c = mid
                        c_stop = row_ptr[y + 1]
                    for c in range(c_first, c_stop):
                        if sweep == 0:
                            g = guess[c_start[c] + c_len[c] // 2] if it == 0 else labels[c_start[c] + c_len[c] // 2]
                            k = g - 1
                            if g <= 0 or not (wy0[k] <= y < wy1[k]):
                                continue
                            cy = seg[k, 0]
                            cx = seg[k, 1]
                            dy = cy - np.float32(y)
                            dy = dy * dy
                            a = max(c_x0[c], wx0[k])
                            b = min(c_x0[c] + c_len[c], wx1[k])
                            if a >= b:
                                continue
                        else:
                            if c_x0[c] >= x_hi:
                                break
                            a = max(c_x0[c], x_lo)
                            b = min(c_x0[c] + c_len[c], x_hi)
                            # Smallest spatial term over the columns a .. b - 1, computed exactly as below:
                            # at the column nearest cx (|cx - x| smallest; rounding is monotone).
                            x_near = min(max(x_round, a), b - 1)
                            dxn = cx - np.float32(x_near)
                            if (dy + dxn * dxn) * weight > cmax[c]:
                                continue
                        # Offer segment k to the pixels of columns a .. b - 1 of chunk c.
                        if ignore_color:
                            sl = zero
                            sa = zero
                            sb = zero
                        else:
                            sl = seg[k, 2]
                            sa = seg[k, 3]
                            sb = seg[k, 4]
                        label = np.int32(k + 1)
                        n_valid = b - a
                        base = np.uint64(c_start[c] + (a - c_x0[c]))
                        fa32 = np.float32(a)
                        # Unsigned indices (no negative-index fix-up) and a float32 column counter
                        # (a + t is exact in float32: all values are below 2**24).
                        for t in range(16):
                            i = base + np.uint64(t)
                            dx = cx - (fa32 + np.float32(t))
                            d = (dy + dx * dx) * weight
                            u = dl[i] - sl
                            col = u * u
                            u = da[i] - sa
                            col += u * u
                            u = db[i] - sb
                            col += u * u
                            d += col
                            old = dist[i]
                            lab = labels[i]
                            better = (t < n_valid) & ((d < old) | ((d == old) & (label < lab) & (d < inf)))
                            dist[i] = d if better else old
                            labels[i] = label if better else lab
                        if sweep == 0:
                            # Largest distance of the chunk after its first visit: an upper bound for
                            # the rest of the iteration (distances only decrease).
                            m = np.int32(0)
                            base = np.uint64(c_start[c])
                            for t in range(16):
                                v = bits[base + np.uint64(t)]
                                v = v if t < c_len[c] else np.int32(0)
                                m = v if v > m else m
                            cmax_bits[c] = m
                    if sweep == 0:
                        m = np.int32(0)
                        for c in range(row_ptr[y], row_ptr[y + 1]):
                            v = cmax_bits[c]
                            m = v if v > m else m
                        rmax_bits[y] = m
        changed = False
        for i in range(n):
            if dist[i] < inf:
                changed = True
                break
        if not changed:
            break
        # New centres: float32 sums in raster order, divided by the float32 count. The running
        # sums of the current segment stay in registers while consecutive pixels share it
        # (the same additions in the same order).
        counts[:] = 0
        sums[:, :] = 0
        cur = -1
        n_cur = 0
        s0 = s1 = s2 = s3 = s4 = np.float32(0.0)
        for i in range(n):
            if labels[i] == 0:
                continue
            k = labels[i] - 1
            if k != cur:
                if cur >= 0:
                    counts[cur] = n_cur
                    sums[cur, 0] = s0
                    sums[cur, 1] = s1
                    sums[cur, 2] = s2
                    sums[cur, 3] = s3
                    sums[cur, 4] = s4
                cur = k
                n_cur = counts[k]
                s0 = sums[k, 0]
                s1 = sums[k, 1]
                s2 = sums[k, 2]
                s3 = sums[k, 3]
                s4 = sums[k, 4]
            n_cur += 1
            s0 += np.float32(ys[i])
            s1 += np.float32(xs[i])
            s2 += feat_l[i]
            s3 += feat_a[i]
            s4 += feat_b[i]
        if cur >= 0:
            counts[cur] = n_cur
            sums[cur, 0] = s0
            sums[cur, 1] = s1
            sums[cur, 2] = s2
            sums[cur, 3] = s3
            sums[cur, 4] = s4
        for k in range(k_total):
            m32 = np.float32(counts[k])
            for c in range(5):
                seg[k, c] = sums[k, c] / m32  # 0 / 0 = NaN for an empty segment, as in scikit-image


# ----------------------------------------------------------------------------
# Python driver
# ----------------------------------------------------------------------------
def _require_numba():
    if not AVAILABLE:
        raise ImportError(f"the compiled SLIC needs numba, which could not be imported ({IMPORT_ERROR})")


def _features(pix, compactness):
    """scikit-image's colour preprocessing of the masked pixels ``pix`` (``(N, 3)`` float32, a copy).

    Returns ``(N, 3)`` float32 Lab / compactness: the masked values stretched
    to [0, 1], ``rgb2lab``, times ``1 / compactness`` (all elementwise, so a
    pixel's result does not depend on the other pixels).
    """
    imin = pix.min()
    imax = pix.max()
    if not (np.isfinite(imin) and np.isfinite(imax)):
        raise ValueError("masked image values must be finite")
    pix -= imin
    if imax != imin:
        pix /= imax - imin
    lab = rgb2lab(pix[np.newaxis])[0]
    return np.ascontiguousarray(lab * (1.0 / compactness), dtype=np.float32)


def _seeds(ys, xs, n_segments):
    """scikit-image's ``_get_mask_centroids`` for a 2-D mask: ``(K, 2)`` float64 centres and the step."""
    n = ys.shape[0]
    rng = np.random.RandomState(SEED)
    idx_full = np.arange(n, dtype=int)
    idx = np.sort(rng.choice(idx_full, min(n_segments, n), replace=False))
    n_dense = int((DENSE_FACTOR ** 2) * n_segments)
    if n > n_dense:
        dense = np.sort(rng.choice(idx_full, n_dense, replace=False))
        obs_y, obs_x = ys[dense].astype(np.float64), xs[dense].astype(np.float64)
    else:
        obs_y, obs_x = ys.astype(np.float64), xs.astype(np.float64)
    code_y = ys[idx].astype(np.float64)
    code_x = xs[idx].astype(np.float64)
    k = code_y.shape[0]
    # Blocks about twice as wide as the spacing of the centres on the mask.
    block = float(max(2, int(round(2.0 * np.sqrt(n / k)))))
    _kmeans(obs_y, obs_x, code_y, code_x, KMEANS_ITERATIONS, block)
    centroids = np.stack([np.zeros(k), code_y, code_x], axis=1)
    dist = squareform(pdist(centroids))
    np.fill_diagonal(dist, np.inf)
    closest = dist.argmin(-1)
    steps = abs(centroids - centroids[closest, :]).mean(0)
    return centroids, max(steps)


def masked_slic(rgb, mask, n_segments=128, compactness=10.0, max_num_iter=10):
    """Labels of the masked pixels, identical to scikit-image's mask SLIC.

    ``rgb``: ``(H, W, 3)`` float32 (scikit-image computes in float64 for
    float64 input, which this module does not reproduce, so other types are
    refused); ``mask``: ``(H, W)`` bool with at least one pixel. Returns
    ``(N,)`` int32 labels of ``mask``'s pixels in raster order, equal to
    ``skimage.segmentation.slic(rgb, n_segments=n_segments,
    compactness=compactness, mask=mask, max_num_iter=max_num_iter,
    enforce_connectivity=False, start_label=1, channel_axis=-1)[mask]``:
    0 for a pixel reached by no centre, superpixels from 1. The array shape
    matters (as in scikit-image, the search window follows it), so crop
    before calling exactly as before calling ``slic``.
    """
    rgb = np.asarray(rgb)
    mask = np.asarray(mask, dtype=bool)
    if rgb.dtype != np.float32 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != mask.shape:
        raise ValueError(f"need an (H, W, 3) float32 image and an (H, W) mask, got {rgb.dtype} {rgb.shape} "
                         f"and {mask.shape}")
    ys, xs = np.nonzero(mask)
    return masked_slic_pixels(rgb[mask], ys, xs, mask.shape, n_segments, compactness, max_num_iter)


def masked_slic_pixels(pix, ys, xs, shape, n_segments=128, compactness=10.0, max_num_iter=10):
    """:func:`masked_slic` given the masked pixels already gathered.

    ``pix``: ``(N, 3)`` float32 RGB of the masked pixels and ``ys``, ``xs``
    their coordinates, in raster order (``rgb[mask]``, ``np.nonzero(mask)``);
    ``shape``: ``(H, W)`` of the array. ``pix`` is not modified.
    """
    _require_numba()
    pix = np.asarray(pix)
    if pix.dtype != np.float32 or pix.ndim != 2 or pix.shape[1] != 3:
        raise ValueError(f"need (N, 3) float32 pixels, got {pix.dtype} {pix.shape}")
    n = ys.shape[0]
    if n == 0:
        raise ValueError("the mask has no pixel")
    if pix.shape[0] != n or xs.shape[0] != n:
        raise ValueError(f"{pix.shape[0]} pixels but {n} row and {xs.shape[0]} column coordinates")
    height, width = (int(v) for v in shape)
    feat = _features(pix.copy(), compactness)
    centroids, step = _seeds(ys, xs, int(n_segments))
    k = centroids.shape[0]
    # The loop's own window steps: regular_grid of the array shape with K centres.
    slices = regular_grid((1, height, width), k)
    step_y, step_x = (int(s.step if s.step is not None else 1) for s in slices[1:])
    step32 = np.float32(step)
    with np.errstate(divide="ignore"):
        weight = np.float32(1.0 / np.float64(step32 * step32))
    seg = np.zeros((k, 5), np.float32)
    seg[:, 0] = centroids[:, 1]
    seg[:, 1] = centroids[:, 2]
    ys64, xs64 = ys.astype(np.int64), xs.astype(np.int64)
    row_ptr, c_x0, c_len, c_start = _chunks(ys64, xs64, CHUNK)
    # Per-pixel arrays padded by one chunk: the kernels always read and write whole chunks.
    fl, fa, fb = (np.zeros(n + CHUNK, np.float32) for _ in range(3))
    fl[:n], fa[:n], fb[:n] = feat[:, 0], feat[:, 1], feat[:, 2]
    labels = np.zeros(n + CHUNK, np.int32)
    dist = np.zeros(n + CHUNK, np.float32)
    guess = _nearest_centre_guess(c_x0, c_len, c_start, row_ptr, seg, n)
    _slic_pass(ys64, xs64, fl, fa, fb, row_ptr, c_x0, c_len, c_start, height, width, seg, step_y, step_x,
               weight, True, int(max_num_iter), guess, labels, dist)
    guess = labels.copy()  # the colour pass starts from the colour-blind pass's labels
    _slic_pass(ys64, xs64, fl, fa, fb, row_ptr, c_x0, c_len, c_start, height, width, seg, step_y, step_x,
               weight, False, int(max_num_iter), guess, labels, dist)
    return labels[:n]


def masked_slic_image(rgb, mask, n_segments=128, compactness=10.0, max_num_iter=10):
    """:func:`masked_slic` as an ``(H, W)`` int64 label image (0 outside the mask), like ``slic``'s output."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.int64)
    out[mask] = masked_slic(rgb, mask, n_segments, compactness, max_num_iter)
    return out


def warm_up():
    """Compile (or load from the cache) every kernel now, e.g. before forking workers."""
    _require_numba()
    rng = np.random.default_rng(0)
    rgb = rng.random((12, 12, 3), dtype=np.float32)
    mask = np.zeros((12, 12), bool)
    mask[2:10, 3:11] = True
    masked_slic(rgb, mask, n_segments=4)
