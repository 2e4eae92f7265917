"""Data-parallel training equals one process with the same global batch (CPU, gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sketchseg.launch import parse_params
from sketchseg.engine.distributed import ShardedBatchSampler, merge_eval_rows
from sketchseg.model.clip_loader import load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import SketchSegModel

REPO = Path(__file__).resolve().parents[2]
MODEL = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
             vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6], finetune="full")


# ------------------------------------------------------------------ sampler and helpers
@pytest.mark.parametrize("n, batch, world", [(23, 8, 2), (24, 8, 4), (9, 4, 2), (5, 6, 3)])
def test_rank_batches_are_the_single_process_batches_cut_in_stripes(n, batch, world):
    single = ShardedBatchSampler(n, batch, seed=3)
    ranks = [ShardedBatchSampler(n, batch, seed=3, rank=r, world_size=world) for r in range(world)]
    for epoch in (1, 2):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        want = [[i for _, i in b] for b in single]
        assert sorted(i for b in want for i in b) == list(range(n))  # every sketch once per epoch
        got = list(zip(*[list(r) for r in ranks]))
        assert len(got) == len(ranks[0])
        for k, parts in enumerate(got):
            union = sorted(i for part in parts for _, i in part)
            assert union == sorted(want[k])
            assert all(e == epoch for part in parts for e, _ in part)
        # a last global batch smaller than the number of processes is left out (never a stalled rank)
        assert len(got) == len(want) - (1 if n % batch and n % batch < world else 0)
    single.set_epoch(1)
    other = ShardedBatchSampler(n, batch, seed=3)
    other.set_epoch(2)
    assert list(single) != list(other)  # reshuffled every epoch


@pytest.mark.parametrize("world", [1, 2])
def test_drop_last_leaves_out_the_incomplete_last_batch_alike_for_any_world(world):
    # FS-COCO's shape in small: 2 x 4 + 1 sketches; the one-sketch batch goes with drop_last
    keep = [ShardedBatchSampler(9, 4, seed=1, rank=r, world_size=world) for r in range(world)]
    drop = [ShardedBatchSampler(9, 4, seed=1, rank=r, world_size=world, drop_last=True) for r in range(world)]
    assert [len(s) for s in drop] == [2] * world and [len(list(s)) for s in drop] == [2] * world
    assert len(keep[0]) == (3 if world == 1 else 2)  # several processes drop a batch smaller than the world
    dropped = {i for s in drop for b in s for _, i in b}
    full = {i for s in keep for b in s for _, i in b}
    assert len(dropped) == 8 and dropped < set(range(9))
    assert full == (set(range(9)) if world == 1 else dropped)
    # the same two full batches with one process or two
    one = [[i for _, i in b] for b in ShardedBatchSampler(9, 4, seed=1, drop_last=True)]
    assert sorted(i for b in one for i in b) == sorted(dropped)


def test_global_batch_must_split_evenly():
    with pytest.raises(Exception, match="divisible"):
        ShardedBatchSampler(10, 6, seed=0, rank=0, world_size=4)


def test_parse_params_like_kedro_run():
    assert parse_params("training.epochs=2,model.margin=0.5,splits.test_participants=[1, 2],x=abc") == {
        "training": {"epochs": 2}, "model": {"margin": 0.5}, "splits": {"test_participants": [1, 2]}, "x": "abc"}
    assert parse_params(None) == {}


def test_merged_shard_scores_are_the_per_sketch_average():
    a = pd.DataFrame({"sketch_id": [3, 1], "miou": [50.0, float("nan")], "pixel_acc": [10.0, 30.0]})
    b = pd.DataFrame({"sketch_id": [2], "miou": [70.0], "pixel_acc": [20.0]})
    out = merge_eval_rows([a, b, a.iloc[:0]], ["miou", "pixel_acc"])
    assert out == {"miou": 60.0, "pixel_acc": 20.0, "n_sketches": 3.0}


# ------------------------------------------------------------------ the loss of a split batch
class _FakeRank:
    """Plays rank ``rank`` of 2 in one process: the other rank's text rows / counts are given."""

    world_size = 2

    def __init__(self, rank, max_captions, max_pairs, other_rows=None, other_counts=None):
        self.rank, self.max_captions, self.max_pairs = rank, max_captions, max_pairs
        self.other_rows, self.other_counts = other_rows, other_counts
        self.rows, self.counts = [], []

    def gather_rows(self, emb, ids, pad_to):
        k = len(self.rows)
        self.rows.append((emb.detach().clone(), ids.clone()))
        o_emb, o_ids = self.other_rows[k] if self.other_rows else (emb.detach()[:0], ids[:0])

        def pad(e, i):
            ep = e.new_zeros(pad_to, e.shape[1])
            ep[: len(e)] = e
            ip = torch.zeros(pad_to, dtype=torch.long)
            ip[: len(i)] = i
            ok = torch.zeros(pad_to, dtype=torch.bool)
            ok[: len(i)] = True
            return ep, ip, ok

        parts = [pad(emb.detach(), ids), pad(o_emb, o_ids)]
        if self.rank == 1:
            parts.reverse()
        return tuple(torch.cat(x) for x in zip(*parts))

    def all_reduce_sum(self, t):
        k = len(self.counts)
        self.counts.append(t.detach().clone())
        return t + (self.other_counts[k] if self.other_counts else torch.zeros_like(t))


def _sketches(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    img = torch.ones(n, 3, 64, 64)
    for i in range(n):
        for _ in range(8):
            r, c = torch.randint(4, 50, (2,), generator=g).tolist()
            img[i, :, r, c : c + 12] = 0.0
            img[i, :, r : r + 12, c] = 0.0
    return img


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    clip, tok, ms = load_clip(ModelConfig(**MODEL))
    torch.manual_seed(1)
    return SketchSegModel(clip, tok, ModelConfig(**MODEL), ms)


@pytest.mark.parametrize("second_half_has_categories", [True, False])
def test_loss_and_gradients_of_a_batch_split_over_two_processes(tiny, second_half_has_categories):
    captions = ["a tree next to a car", "a dog on the grass", "a tree next to a car", "a house", "a cat", "a sun"]
    cats = [["tree", "car"], ["dog", "grass"], ["tree"], ["house", "tree"], ["cat"], ["sun", "tree"]]
    if not second_half_has_categories:
        cats = cats[:3] + [[], [], []]
    images = _sketches(6)
    halves = (slice(0, 3), slice(3, 6))
    model = tiny.train()

    def run(gather=None, part=slice(0, 6)):
        model.zero_grad(set_to_none=True)
        out = model.training_losses(images[part], captions[part], cats[part], gather=gather)
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return {k: out[k].detach() for k in ("loss", "loss_global", "loss_category")}, grads

    full, full_grads = run()
    bounds = dict(max_captions=3, max_pairs=6)
    rec = [_FakeRank(r, **bounds) for r in (0, 1)]
    for r, part in enumerate(halves):
        run(rec[r], part)  # round 1: each rank's own text rows
    rec2 = [_FakeRank(r, other_rows=rec[1 - r].rows, **bounds) for r in (0, 1)]
    for r, part in enumerate(halves):
        run(rec2[r], part)  # round 2: the valid-anchor counts over the global candidates
    results = [run(_FakeRank(r, other_rows=rec[1 - r].rows, other_counts=rec2[1 - r].counts, **bounds), part)
               for r, part in enumerate(halves)]
    for key in full:  # DDP logs the mean of the ranks' losses and averages their gradients
        torch.testing.assert_close((results[0][0][key] + results[1][0][key]) / 2, full[key], rtol=1e-5, atol=1e-6)
    assert full["loss_category"] > 0
    for name, g in full_grads.items():
        avg = (results[0][1].get(name, torch.zeros_like(g)) + results[1][1].get(name, torch.zeros_like(g))) / 2
        torch.testing.assert_close(avg, g, rtol=1e-4, atol=1e-6, msg=name)


# ------------------------------------------------------------------ two real processes
def _tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sketchseg.data.fscoco import ingest_fscoco
    from sketchseg.data.sample import generate_sample
    from sketchseg.data.splits import make_protocol_splits
    from sketchseg.text.nltk_setup import ensure_nltk_data
    from sketchseg.text.nouns import extract_table

    generate_sample(root / "fscoco", root / "seg", n_participants=4, sketches_per_participant=7, seed=5,
                    test_participants=(1,), val_per_participant=2, write_photos=False, progress=False)
    manifest, _ = ingest_fscoco(root / "fscoco", root / "seg", max_rejection_rate=0.0, progress=False)
    splits = make_protocol_splits(manifest, test_participants=[1], val_per_participant=2, seed=5)
    ensure_nltk_data(os.environ.get("NLTK_DATA"), allow_download=False)
    prompts, _ = extract_table(splits[["sketch_id", "caption"]])
    train = splits[splits["split"] == "train"].merge(prompts, on="sketch_id")
    val = splits[splits["split"] == "val"].reset_index(drop=True)
    return train, val


def _train(data_dir: str):
    from sketchseg.data.annotated import AnnotatedSketches
    from sketchseg.data.train_set import TrainSketches
    from sketchseg.engine.runtime import seed_everything
    from sketchseg.engine.train import TrainConfig, fit
    from sketchseg.model.model import build_model

    train = pd.read_pickle(Path(data_dir) / "train.pkl")
    val = pd.read_pickle(Path(data_dir) / "val.pkl")
    # no cap (the paper): every category of a caption; the gather is sized by the longest list
    cfg = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-4, seed=7, device="cpu", num_workers=0,
                      max_categories_per_sketch=None)
    seed_everything(cfg.seed)
    model = build_model(ModelConfig.from_dict(MODEL))
    return fit(model, TrainSketches(train, image_size=64, max_categories=None, seed=cfg.seed),
               AnnotatedSketches(val, image_size=64, render_size=128), cfg, eval_batch_size=2)


def _ddp_worker(rank: int, world: int, init_file: str, data_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _train(data_dir)
        torch.save({"history": result.history.to_dict("list"), "last": result.last_state,
                    "best_epoch": result.best_epoch, "world": result.extra["world_size"]},
                   Path(data_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    train, val = _tables(tmp_path / "sample")
    assert len(train) >= 12 and len(val) >= 4
    train.to_pickle(tmp_path / "train.pkl")
    val.to_pickle(tmp_path / "val.pkl")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    single = _train(str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    want = single.history.to_dict("list")
    for got in ranks:  # every process ends with the same history and weights
        assert got["history"]["epoch"] == want["epoch"] == [0, 1, 2]
        for col in ("train_loss", "train_loss_global", "train_loss_category", "threshold"):
            assert got["history"][col][1:] == pytest.approx(want[col][1:], rel=1e-4, abs=1e-6), col
        for col in ("val_miou", "val_pixel_acc", "val_stroke_acc", "val_n_sketches"):
            assert got["history"][col] == pytest.approx(want[col], abs=1e-6), col
        assert got["best_epoch"] == single.best_epoch
        assert got["last"].keys() == single.last_state.keys()
        for k, v in single.last_state.items():
            # Adam rescales tiny, rounding-level gradient differences: 1.05e-5 measured after 6 steps
            torch.testing.assert_close(got["last"][k], v, rtol=1e-3, atol=5e-5, msg=k)
    moved = max((single.last_state[k] - v).abs().max().item()
                for k, v in _train_initial_state().items() if k in single.last_state)
    assert moved > 1e-4  # training did change the weights: the comparison is not vacuous


def _train_initial_state() -> dict[str, torch.Tensor]:
    from sketchseg.engine.runtime import seed_everything
    from sketchseg.model.checkpoint import trainable_state_dict
    from sketchseg.model.model import build_model

    seed_everything(7)
    return {k: v.detach().clone() for k, v in trainable_state_dict(build_model(ModelConfig.from_dict(MODEL))).items()}


# ------------------------------------------------------------------ torchrun + Kedro
@pytest.mark.slow
def test_torchrun_runs_the_kedro_training_node_on_two_processes(tmp_path):
    from tests.conftest import copy_project

    from sketchseg.data.sample import generate_sample

    project = copy_project(tmp_path / "project")
    raw = project / "data" / "01_raw" / "sample"
    generate_sample(raw / "fscoco", raw / "fscoco-seg", n_participants=5, sketches_per_participant=6, seed=0,
                    test_participants=(1,), val_per_participant=2, write_photos=False, progress=False)
    params = ("splits.test_participants=[1],splits.val_per_participant=2,training.epochs=1,training.batch_size=8,"
              "model.pretrained=null,model.allow_random_init=true")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node=2",
           "-m", "sketchseg.launch", "--env=sample", "--pipeline=training", "--prepare-data",
           f"--params={params}"]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (project / "data/06_models/sample/ours-sample/best.safetensors").is_file()
    assert (project / "data/06_models/sample/ours-sample/last.safetensors").is_file()
    history = pd.read_csv(project / "data/07_model_output/sample/ours-sample/training_history.csv")
    assert list(history["epoch"]) == [0, 1] and history["train_loss"].notna().iloc[-1]

    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sketchseg-sample")
    runs = client.search_runs([exp.experiment_id])
    names = sorted(r.data.tags.get("mlflow.runName", "") for r in runs)
    # one run for the data preparation, ONE for the training (rank 0 only)
    train_runs = [r for r in runs if "val_miou" in r.data.metrics]
    assert len(train_runs) == 1, names
    run = train_runs[0]
    assert run.data.params.get("training.batch_size") == "8"
    history_metrics = client.get_metric_history(run.info.run_id, "val_miou")
    assert sorted(m.step for m in history_metrics) == [0, 1]
