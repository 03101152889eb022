"""SuperStyleNet model package: :class:`SuperStyleNetModel` and the networks."""
