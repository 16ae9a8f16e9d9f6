"""Zero-size tensors may have huge other axes; ops on them must not walk those axes."""

import ferrograd as fg


def test_cat_and_stack_of_zero_size_tensors_with_huge_axes_return_at_once():
    # Found by the long fuzz run: joining (10¹², 0) arrays walked 10¹² empty rows.
    a = fg.zeros(10**12, 0, requires_grad=True)
    assert fg.cat([a, a], axis=1).shape == (10**12, 0)
    assert fg.stack([a, a], axis=2).shape == (10**12, 0, 2)
    out = fg.cat([a, a], axis=0)
    assert out.shape == (2 * 10**12, 0)
    out.sum().backward()
    assert a.grad is not None and a.grad.shape == (10**12, 0)
