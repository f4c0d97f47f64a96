"""Data-parallel training: the sharded loader, and 2 gloo processes on the CPU (torch.multiprocessing)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vae_lib.configs import BetaConfig, TrainConfig
from vae_lib.data import InMemoryLoader
from vae_lib.distributed import ShardedLoader, shard
from vae_lib.train import Trainer


def test_shards_split_every_global_batch_and_cover_each_sample_once():
    ids = torch.arange(21).float()
    loader = InMemoryLoader(ids, batch_size=6, seed=3)
    shards = [ShardedLoader(InMemoryLoader(ids, batch_size=6, seed=3), r, 2) for r in range(2)]
    # 21 = 3 full batches of 6 + a last batch of 3 (>= 2 ranks, so it is kept): 4 steps on each rank.
    assert [len(s) for s in shards] == [4, 4] and len(loader) == 4
    for epoch in range(2):
        whole = [b[0].tolist() for b in loader]
        parts = [[b[0].tolist() for b in s] for s in shards]
        for b, batch in enumerate(whole):
            assert parts[0][b] == batch[0::2] and parts[1][b] == batch[1::2]
        seen = sorted(v for p in parts for batch in p for v in batch)
        assert seen == list(range(21))
    assert shards[0].epoch == shards[1].epoch == loader.epoch == 2
    assert shards[1].state_dict() == {"epoch": 2, "seed": 3}


def test_a_last_batch_smaller_than_the_world_is_left_out():
    ids = torch.arange(13).float()  # 2 batches of 6 and one of 1: rank 1 would get nothing
    shards = [ShardedLoader(InMemoryLoader(ids, batch_size=6, shuffle=False), r, 2) for r in range(2)]
    assert [len(s) for s in shards] == [2, 2]
    assert sorted(v for s in shards for b in s for v in b[0].tolist()) == list(range(12))


def test_shard_is_a_no_op_for_one_process_and_checks_its_arguments():
    loader = InMemoryLoader(torch.zeros(8, 1), batch_size=4)
    assert shard(loader) is loader and shard(loader, 0, 1) is loader
    assert isinstance(shard(loader, 1, 2), ShardedLoader)
    with pytest.raises(ValueError, match="rank"):
        ShardedLoader(loader, 2, 2)
    with pytest.raises(ValueError, match="smaller than the world size"):
        ShardedLoader(loader, 0, 8)


class Linear(nn.Module):
    """A deterministic autoencoder on 6-d vectors: the loss has no sampling noise."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(6, 3)
        self.decode = nn.Linear(3, 6)

    def forward(self, x):
        return self.decode(torch.tanh(self.encode(x)))


def mse_loss(model, batch, *, beta, epoch):
    (x,) = batch
    mse = (model(x) - x).pow(2).sum(1).mean()
    return {"loss": mse, "mse": mse}


def data():
    return torch.randn(48, 6, generator=torch.Generator().manual_seed(0))


def train_config():
    return TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cpu", beta=BetaConfig("constant", 1.0))


def _rank(rank: int, world_size: int, port: int, run_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(100 + rank)
        trainer = Trainer(Linear(), mse_loss, train_config(), run_dir=run_dir, progress=False)
        trainer.load_checkpoint()  # the first epoch, trained by one process
        history = trainer.fit(InMemoryLoader(data(), batch_size=8, seed=1))
        torch.save({"params": [p.detach() for p in trainer.model.parameters()], "history": history,
                    "shard_steps": trainer.step}, os.path.join(run_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """Epoch 1 in one process, epochs 2-3 resumed from its checkpoint by 2 ranks."""
    run_dir = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(100)
    Trainer(Linear(), mse_loss, train_config(), run_dir=run_dir, progress=False).fit(
        InMemoryLoader(data(), batch_size=8, seed=1), epochs=1)
    mp.start_processes(_rank, args=(2, _free_port(), str(run_dir)), nprocs=2, join=True, start_method="spawn")
    return run_dir, [torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_ranks_keep_identical_parameters_and_the_loss_falls(two_rank_run):
    run_dir, ranks = two_rank_run
    for p0, p1 in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(p0, p1)
    epochs = [e["mse"] for e in ranks[0]["history"]["epochs"]]
    assert epochs[-1] < 0.8 * epochs[0]
    # 48 samples in global batches of 8: 6 steps per epoch on each rank, logged terms averaged over ranks.
    assert ranks[0]["shard_steps"] == ranks[1]["shard_steps"] == 18
    assert ranks[0]["history"]["steps"] == ranks[1]["history"]["steps"]
    # Only rank 0 wrote the checkpoint, and it holds the plain model's parameters.
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "rank0.pt", "rank1.pt"]
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert set(saved["model"]) == {"encode.weight", "encode.bias", "decode.weight", "decode.bias"}
    assert all(torch.equal(a, b) for a, b in zip(saved["model"].values(), ranks[0]["params"]))


def test_one_process_then_two_ranks_take_the_same_steps_as_one_process(two_rank_run):
    # Each rank sees half of every global batch and DDP averages the gradients: the gradient of the
    # mean over the global batch, as in one process (up to float round-off in the sums).
    _, ranks = two_rank_run
    torch.manual_seed(100)
    single = Trainer(Linear(), mse_loss, train_config(), progress=False)
    single.fit(InMemoryLoader(data(), batch_size=8, seed=1))
    for p, q in zip(single.model.parameters(), ranks[0]["params"]):
        assert torch.allclose(p.detach(), q, atol=1e-5)
    for a, b in zip(single.history["steps"], ranks[0]["history"]["steps"]):
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-4)


def test_a_two_rank_checkpoint_resumes_in_one_process(two_rank_run, tmp_path):
    run_dir, ranks = two_rank_run
    (tmp_path / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    config = TrainConfig(**{**train_config().to_dict(), "epochs": 4, "beta": BetaConfig("constant", 1.0)})
    resumed = Trainer(Linear(), mse_loss, config, run_dir=tmp_path, progress=False)
    resumed.load_checkpoint()
    assert (resumed.step, resumed.epoch) == (18, 3)
    assert all(torch.equal(p.detach(), q) for p, q in zip(resumed.model.parameters(), ranks[0]["params"]))
    resumed.fit(InMemoryLoader(data(), batch_size=8, seed=1))
    assert (resumed.step, resumed.epoch) == (24, 4)
