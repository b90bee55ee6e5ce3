"""The SA4Depth model: depth network, pose network and (training/odometry only) the feature
network with its Levenberg-Marquardt refiner, held in one module so one state dict covers all."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import Config
from .errors import CheckpointError
from .geometry import pose_from_axisangle
from .networks.depth_decoder import DepthDecoder, disp_to_depth
from .networks.feature_net import FeatureNet
from .networks.monodepth2_io import load_imagenet_resnet
from .networks.pose_decoder import PoseNet
from .networks.resnet_encoder import ResnetEncoder
from .refine import FeatureMetricRefiner, PosePrior, RefineResult, TrustRegion


class SA4DepthModel(nn.Module):
    """Depth + pose networks, and the feature-metric refiner when `cfg.refine.enabled`.

    The refiner's parameters exist even when refinement is switched off for training, so that
    any checkpoint of a configuration can be loaded by the streaming odometry estimator.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        m, r = cfg.model, cfg.refine
        self.min_depth, self.max_depth = m.min_depth, m.max_depth
        self.depth_encoder = ResnetEncoder(m.num_layers)
        self.depth_decoder = DepthDecoder(self.depth_encoder.num_ch_enc, m.scales)
        self.pose_net = PoseNet.build(m.num_layers)
        self.feature_net = FeatureNet(strides=r.strides, channels=r.feature_channels)
        self.refiner = FeatureMetricRefiner(
            strides=r.strides,
            iterations=r.iterations,
            damping=r.damping,
            init_damping=r.init_damping,
            detach_depth=r.detach_depth,
            detach_between_levels=r.detach_between_levels,
            max_points=r.max_points,
        )
        self.frozen: tuple[str, ...] = ()

    # submodules held fixed for each config.TRAINABLE choice
    FROZEN = {"all": (), "refiner": ("depth_encoder", "depth_decoder", "pose_net"),
              "pose": ("depth_encoder", "depth_decoder")}

    def freeze(self, names: tuple[str, ...]) -> None:
        """Fix the named submodules: no gradients, and eval-mode batch norm even while the rest
        trains, so their outputs stay bit-identical."""
        self.frozen = tuple(names)
        for name in self.frozen:
            getattr(self, name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def optimizer_groups(self, lr: float, damping_lr_factor: float) -> list[dict]:
        """Adam parameter groups: the refiner (its learned damping) at `damping_lr_factor` x `lr`.

        The damping lives in log space over many decades, so at the networks' learning rate it
        would barely move. Each group carries its "lr_factor" so a new base rate keeps the ratio.
        """
        damping, rest = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (damping if name.startswith("refiner.") else rest).append(p)
        groups = [{"params": rest, "lr": lr, "lr_factor": 1.0}]
        if damping:
            groups.append({"params": damping, "lr": lr * damping_lr_factor, "lr_factor": damping_lr_factor})
        return groups

    def load_weights(self, weights: dict, source) -> None:
        """Load a project state dict strictly: every tensor of this model, nothing else, same
        shapes. Training and inference load alike, so no checkpoint trains that cannot deploy.
        CheckpointError (naming `source`) when they do not fit."""
        try:
            self.load_state_dict(weights)
        except RuntimeError as exc:
            # torch lists every missing key and mismatch; the first line says enough to act on
            raise CheckpointError(f"{source}: weights do not fit the network its config describes "
                                  f"({str(exc).strip().splitlines()[0]}); check model.num_layers") from exc

    def load_monodepth2(self, parts: dict) -> None:
        """Copy networks read by networks.load_monodepth2_folder into this model."""
        self.depth_encoder.load_state_dict(parts["encoder"].state_dict())
        self.depth_decoder.load_state_dict(parts["depth_decoder"].state_dict())
        if parts.get("pose_encoder") is not None:
            self.pose_net.encoder.load_state_dict(parts["pose_encoder"].state_dict())
            self.pose_net.decoder.load_state_dict(parts["pose_decoder"].state_dict())

    def load_imagenet(self, path: str) -> None:
        """Initialise both ResNet encoders from a torchvision ImageNet state-dict file."""
        load_imagenet_resnet(self.depth_encoder, path)
        load_imagenet_resnet(self.pose_net.encoder, path)

    def disparities(self, images: torch.Tensor) -> dict:
        """Sigmoid disparities of the depth network.

        Args:
            images: (B,3,H,W) RGB in [0,1], H and W multiples of 32.
        Returns:
            {("disp", s): (B,1,H/2^s,W/2^s)}
        """
        return self.depth_decoder(self.depth_encoder(images))

    def depth(self, images: torch.Tensor) -> torch.Tensor:
        """Depth at full resolution (up to the scene scale the networks learned).

        Args:
            images: (B,3,H,W)
        Returns:
            (B,1,H,W)
        """
        return disp_to_depth(self.disparities(images)[("disp", 0)], self.min_depth, self.max_depth)[1]

    def relative_pose(self, target: torch.Tensor, source: torch.Tensor, offset: int) -> torch.Tensor:
        """PoseNet's T_t->s.

        Args:
            target, source: (B,3,H,W); offset: source index minus target index.
        Returns:
            (B,4,4)
        """
        axisangle, translation = self.pose_net(target, source, offset)
        return pose_from_axisangle(axisangle, translation, invert=offset < 0)

    def pose_step(self, target: torch.Tensor, source: torch.Tensor, offset: int, depth_t: torch.Tensor,
                  K: torch.Tensor, feats_t=None, feats_s=None, trust: TrustRegion | None = None,
                  networks=None, refiner: FeatureMetricRefiner | None = None,
                  posenet: torch.Tensor | None = None, prior: PosePrior | None = None,
                  cost_reference: torch.Tensor | None = None) -> tuple[torch.Tensor, RefineResult]:
        """The refined-pose step shared by training, validation scoring and odometry: PoseNet's
        T_t->s, then its feature-metric LM refinement with the target depth (see refine.py).

        Args:
            target, source: (B,3,H,W) network inputs; offset: source index minus target index.
            depth_t: (B,1,H,W) target depth; K: (B,3,3) at (H,W).
            feats_t, feats_s: the feature pyramids of target and source when already computed
                (list of (features, confidence), coarse to fine); None computes them here.
            trust: when given, each refined pose is also tested for acceptance (odometry).
            networks: what computes PoseNet and the features (an inference backend with the same
                method names, backends.make_networks); None is this model. The solver is this
                model's refiner either way, or `refiner` (e.g. its with_budget() copy at inference).
            posenet: PoseNet's T_t->s (B,4,4) when already computed (odometry computes it beside
                the depth network).
            prior, cost_reference: passed to the refiner (FeatureMetricRefiner.forward).
        Returns:
            PoseNet's T_t->s (B,4,4), RefineResult
        """
        nets = self if networks is None else networks
        T0 = nets.relative_pose(target, source, offset) if posenet is None else posenet
        feats_t = nets.feature_net(target) if feats_t is None else feats_t
        feats_s = nets.feature_net(source) if feats_s is None else feats_s
        return T0, (refiner or self.refiner)(depth_t, K, T0, feats_t, feats_s, trust, prior, cost_reference)
