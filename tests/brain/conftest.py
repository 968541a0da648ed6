import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The test machine is shared: several intra-op threads on busy cores only spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
