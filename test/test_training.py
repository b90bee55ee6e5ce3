"""The self-supervised pipeline end to end on tiny synthetic data: the loss goes down, the
warp with ground truth explains the frames, checkpoints resume, DDP averages gradients."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sa4depth_core.config import load_config
from sa4depth_core.data.kitti_odometry import KittiOdometrySequence
from sa4depth_core.data.sequence import TripletDataset
from sa4depth_core.errors import InputError
from sa4depth_core.geometry import invert_transform, warp
from sa4depth_core.losses import photometric_error
from sa4depth_core.model import SA4DepthModel
from sa4depth_core.objective import compute_losses
from sa4depth_core.train.distributed import resolve_device
from sa4depth_core.train.trainer import LossModule, Trainer, collate

SMALL = ["model.height=64", "model.width=128", "train.batch_size=2", "train.progress=false",
         "refine.feature_channels=8", "refine.iterations=2", "refine.max_points=512"]


def _cfg(tmp_path, *extra):
    return load_config(None, SMALL + [f"train.out_dir={tmp_path}"] + list(extra))


def _batch(root, n=2, **kw):
    ds = TripletDataset(KittiOdometrySequence(root, "00"), 64, 128, **kw)
    return collate([ds[i] for i in range(3, 3 + n)])


def test_ground_truth_warp_reproduces_target(synth_root):
    """With exact depth and pose the warped source matches the target where it is visible."""
    seq = KittiOdometrySequence(synth_root, "00")
    ds = TripletDataset(seq, 64, 128)
    item = ds[5]
    t, s = 5, 4  # item frames are ordered (0, -1, +1)
    T = invert_transform(torch.from_numpy(seq.pose(s))) @ torch.from_numpy(seq.pose(t))
    depth = torch.from_numpy(seq.gt_depth(t))[None, None].float()
    K = item["K"][None].double()
    warped, valid = warp(item["images"][1][None].double(), depth.double(), T[None], K, torch.inverse(K))
    target = item["images"][0][None].double()
    err = photometric_error(warped, target)[valid.bool()]
    raw = photometric_error(item["images"][1][None].double(), target)[valid.bool()]
    assert valid.mean() > 0.7
    # resampling a 64x128 rendering leaves a little error; a wrong warp leaves ~0.25
    assert err.median() < 0.04 and err.median() < 0.15 * raw.median()
    # a wrong pose (10 % longer translation) explains the frames worse
    T_bad = T.clone()
    T_bad[:3, 3] *= 1.1
    warped_bad, _ = warp(item["images"][1][None].double(), depth.double(), T_bad[None], K, torch.inverse(K))
    assert photometric_error(warped_bad, target)[valid.bool()].mean() > err.mean()


@pytest.mark.parametrize("refine", [False, True])
def test_overfitting_one_batch_lowers_the_loss(synth_root, tmp_path, refine):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, f"refine.enabled={refine}")
    model = SA4DepthModel(cfg)
    batch = _batch(synth_root)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(12):
        loss, stats = compute_losses(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])
    if refine:
        assert "refine_success" in stats and stats["refine_success"] > 0.5
        grads = [p.grad for n, p in model.named_parameters() if n.startswith("feature_net.")]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), "features get no gradient through the LM"


def test_trainer_saves_and_resumes(synth_root, tmp_path):
    cfg = _cfg(tmp_path, "refine.enabled=false", "train.max_steps=2", "train.val_every=2", "train.save_every=2")
    train = TripletDataset(KittiOdometrySequence(synth_root, "00"), 64, 128, augment=True)
    val = TripletDataset(KittiOdometrySequence(synth_root, "01"), 64, 128, with_depth=True)
    trainer = Trainer(cfg, train, val, log=lambda *a: None)
    result = trainer.fit()
    assert {"photometric", "abs_rel", "a1", "score"} <= set(result)
    ckpts = sorted((tmp_path / "checkpoints").glob("step_*.pt"))
    assert [c.name for c in ckpts] == ["step_00000002.pt"] and (tmp_path / "best.pt").exists()
    cfg2 = _cfg(tmp_path, "refine.enabled=false", "train.max_steps=3", "train.resume=auto", "train.val_every=100")
    trainer2 = Trainer(cfg2, train, val, log=lambda *a: None)
    assert trainer2.step == 2
    w_before = {k: v.clone() for k, v in trainer2.model.state_dict().items()}
    saved = torch.load(ckpts[0], weights_only=True)["model"]
    assert all(torch.equal(w_before[k], saved[k]) for k in saved)
    trainer2.fit()
    assert trainer2.step == 3
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,split,name,value") and any(",val,abs_rel," in line for line in log)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, root, out_dir, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    cfg = load_config(None, SMALL + [f"train.out_dir={out_dir}", "refine.enabled=false"])
    model = SA4DepthModel(cfg)
    ddp = torch.nn.parallel.DistributedDataParallel(LossModule(model, cfg), find_unused_parameters=True)
    full = _batch(root, n=2)
    mine = {k: (v[rank:rank + 1] if isinstance(v, torch.Tensor) else v) for k, v in full.items()}
    loss, _ = ddp(mine)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    gathered = [torch.zeros_like(grads) for _ in range(world)]
    dist.all_gather(gathered, grads)
    if rank == 0:
        torch.save({"ranks": gathered}, result_path)
    dist.destroy_process_group()


def test_ddp_gloo_gradients_equal_and_averaged(synth_root, tmp_path):
    result = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(synth_root), str(tmp_path), str(result)), nprocs=2, join=True)
    ranks = torch.load(result, weights_only=True)["ranks"]
    assert torch.equal(ranks[0], ranks[1])
    # The synchronised gradient is the mean of the per-sample gradients computed alone.
    torch.manual_seed(0)
    cfg = load_config(None, SMALL + [f"train.out_dir={tmp_path}", "refine.enabled=false"])
    model = SA4DepthModel(cfg)
    full = _batch(synth_root, n=2)
    rng_after_init = torch.get_rng_state()  # each rank draws the auto-mask jitter from here
    per_rank = []
    for r in range(2):
        torch.set_rng_state(rng_after_init)
        model.zero_grad()
        part = {k: (v[r:r + 1] if isinstance(v, torch.Tensor) else v) for k, v in full.items()}
        compute_losses(model, part, cfg)[0].backward()
        per_rank.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    expected = (per_rank[0] + per_rank[1]) / 2
    assert torch.allclose(ranks[0], expected, atol=1e-6, rtol=1e-4)


def test_torchrun_cli_smoke(synth_root, tmp_path):
    """The real launcher path: torchrun, 2 CPU processes, gloo, the sa4depth-train CLI."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "sa4depth_core.train.cli", "--data-root", str(synth_root),
           "--sequences", "00", "--out", str(tmp_path), *SMALL, "train.max_steps=2", "train.val_every=2",
           "data.val_fraction=0.2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "step_00000002.pt").exists()


def test_trainer_starts_from_monodepth2_folder(synth_root, tmp_path):
    from sa4depth_core.networks.monodepth2_io import save_monodepth2_folder

    donor = SA4DepthModel(_cfg(tmp_path))
    folder = tmp_path / "md2"
    save_monodepth2_folder(folder, donor.depth_encoder, donor.depth_decoder, height=64, width=128,
                           pose_encoder=donor.pose_net.encoder, pose_decoder=donor.pose_net.decoder)
    train = TripletDataset(KittiOdometrySequence(synth_root, "00"), 64, 128)
    trainer = Trainer(_cfg(tmp_path / "run", f"train.init={folder}"), train, None, log=lambda *a: None)
    for name, module in [("depth_encoder", donor.depth_encoder), ("pose_net", donor.pose_net)]:
        mine = getattr(trainer.model, name).state_dict()
        assert all(torch.equal(mine[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("switch", ["loss.baseline_aux=true", "refine.aux_trains_depth=false"])
def test_the_study_controls_change_only_what_they_name(synth_root, tmp_path, switch):
    """The control arm adds PoseNet-pose terms of SA4Depth's auxiliary weight; the detached arm
    keeps SA4Depth's loss value but its auxiliary terms give depth no gradient."""
    batch = _batch(synth_root)
    refine = switch.startswith("refine")
    base = ["refine.enabled=true"] if refine else ["refine.enabled=false"]
    results = {}
    for name, extra in (("default", []), ("switched", [switch])):
        cfg = _cfg(tmp_path, *base, *extra)
        torch.manual_seed(0)
        model = SA4DepthModel(cfg)
        torch.manual_seed(1)
        loss, stats = compute_losses(model, batch, cfg)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for n, p in model.named_parameters()
                          if n.startswith("depth_") and p.grad is not None])
        results[name] = (loss.item(), stats, grad)
    (l0, s0, g0), (l1, s1, g1) = results["default"], results["switched"]
    if refine:
        assert l1 == pytest.approx(l0, rel=1e-5)  # same value ...
        assert not torch.allclose(g0, g1)  # ... but depth no longer learns from the auxiliary terms
    else:
        weight = 1 + _cfg(tmp_path).refine.level_loss_weight
        assert l1 == pytest.approx(l0 + weight * s1["baseline_aux_photometric"], rel=1e-5)
        assert "baseline_aux_photometric" not in s0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_an_input_error():
    """Training refuses a GPU it cannot have (no fallback to days on the CPU) and names that are no
    device, with the project's InputError."""
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="gpu0"):
        resolve_device("gpu0")
    assert resolve_device("auto") == torch.device("cpu")
