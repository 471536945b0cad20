"""The segmentation cellular automaton in PyTorch: one update rule shared by every cell.

Shapes: states and per-cell inputs are ``(batch, channels, height, width)``; images are
``(batch, 3, image_height, image_width)`` with values in [0, 1]. The module's parameter
names are the rule file's weight names (see :mod:`nca_sim.rule`), with 1x1 and
depthwise kernels keeping PyTorch's extra singleton axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nca_sim.rule import DECODER_KERNEL, Architecture, Rule, weight_shapes

_TORCH_PAD_MODES = {"zero": "constant", "replicate": "replicate", "circular": "circular"}


class SegmentationNCA(nn.Module):
    """Update network, reset gate, state normalization and readout of one architecture."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        d, hidden, cin = arch.state_channels, arch.hidden_channels, arch.input_channels
        if arch.perception == "full":
            self.perceive = nn.Conv2d(d + cin, hidden, 3)
        else:
            self.pointwise = nn.Conv2d(d + cin, hidden, 1)
            self.depthwise = nn.Conv2d(hidden, hidden, 3, groups=hidden)
        self.hidden = nn.ModuleList(nn.Conv2d(hidden, hidden, 1) for _ in range(arch.num_layers - 2))
        self.update = nn.Conv2d(hidden, d, 1)
        if arch.reset_gate:
            self.reset = nn.Conv2d(hidden, d, 1)
        if arch.highres:
            self.encoder = nn.Conv2d(3, arch.highres_encoder_channels, 3, stride=2)
            self.decoder = nn.ConvTranspose2d(d, arch.num_classes, DECODER_KERNEL, stride=2, padding=1)
        else:
            self.classifier = nn.Conv2d(d, arch.num_classes, 1)

    # -- building blocks ---------------------------------------------------------------

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        mode = _TORCH_PAD_MODES[self.arch.padding]
        return F.pad(x, (1, 1, 1, 1), mode=mode)

    @property
    def spatial_filter(self) -> nn.Parameter:
        """The first layer's 3x3 weights, which ``freeze_spatial`` keeps at initialization."""
        return self.perceive.weight if self.arch.perception == "full" else self.depthwise.weight

    def normalize(self, state: torch.Tensor) -> torch.Tensor:
        kind, eps = self.arch.normalization, self.arch.norm_eps
        if kind == "none":
            return state
        if kind == "pixel":
            return state * torch.rsqrt(state.pow(2).mean(dim=1, keepdim=True) + eps)
        dims = (0, 2, 3) if kind == "batch" else (2, 3)
        mean = state.mean(dim=dims, keepdim=True)
        var = state.var(dim=dims, keepdim=True, unbiased=False)
        return (state - mean) * torch.rsqrt(var + eps)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Return the per-cell input: the RGB itself, or the encoded image of the high-resolution variant."""
        if not self.arch.highres:
            return image
        if image.shape[-2] % 2 or image.shape[-1] % 2:
            raise ValueError(
                f"the high-resolution model needs an image of even height and width, got {tuple(image.shape[-2:])}"
            )
        return F.relu(self.encoder(self._pad(image)))

    def state_grid_size(self, image_height: int, image_width: int) -> tuple[int, int]:
        up = self.arch.upscale
        return image_height // up, image_width // up

    def hidden_features(self, state: torch.Tensor, cell_input: torch.Tensor) -> torch.Tensor:
        """Return the last hidden activation ``h`` of the update network."""
        x = torch.cat([self.normalize(state), cell_input], dim=1)
        if self.arch.perception == "full":
            h = F.relu(self.perceive(self._pad(x)))
        else:
            h = F.relu(self.depthwise(self._pad(self.pointwise(x))))
        for layer in self.hidden:
            h = F.relu(layer(h))
        return h

    # -- public API ----------------------------------------------------------------------

    def initial_state(self, batch: int, height: int, width: int, generator: torch.Generator | None = None):
        device = self.update.weight.device
        return torch.randn(batch, self.arch.state_channels, height, width, generator=generator, device=device)

    def step(
        self,
        state: torch.Tensor,
        cell_input: torch.Tensor,
        *,
        update_probability: float | None = None,
        fire_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply one stochastic update to every cell.

        Parameters
        ----------
        state
            ``(batch, d, h, w)``.
        cell_input
            ``(batch, c, h, w)`` from :meth:`encode_image`.
        update_probability
            Probability that a cell fires; defaults to the architecture's.
        fire_mask
            Optional ``(batch, 1, h, w)`` boolean mask of the cells that fire; it
            replaces the random draw (the simulator's parity tests use it).
        noise
            Optional ``(batch, d, h, w)`` reset-gate noise ``z``; drawn from N(0, 1)
            when omitted.

        Returns
        -------
        new_state, reset_mean
            The new state and the mean reset-gate activation over the cells that
            fired (0 without a reset gate).
        """
        h = self.hidden_features(state, cell_input)
        candidate = self.update(h)
        if self.arch.residual:
            candidate = state + candidate
        if fire_mask is None:
            p = self.arch.update_probability if update_probability is None else update_probability
            if p >= 1.0:
                fire_mask = torch.ones_like(state[:, :1], dtype=torch.bool)
            else:
                draw = torch.rand(state[:, :1].shape, generator=generator, device=state.device)
                fire_mask = draw < p
        fired = fire_mask.to(state.dtype)
        reset_mean = state.new_zeros(())
        if self.arch.reset_gate:
            gate = torch.sigmoid(self.reset(h))
            if noise is None:
                noise = torch.randn(state.shape, generator=generator, device=state.device)
            candidate = gate * noise + (1.0 - gate) * candidate
            fired_values = fired.sum() * self.arch.state_channels
            reset_mean = (gate * fired).sum() / fired_values.clamp(min=1.0)
        new_state = torch.where(fire_mask, candidate, state)
        return new_state, reset_mean

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """Return class logits: ``(batch, classes, h, w)``, or at image resolution for the high-resolution variant."""
        if self.arch.highres:
            return self.decoder(state)
        return self.classifier(state)

    def rollout(
        self,
        image: torch.Tensor,
        steps: int,
        state: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        logit_steps: set[int] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run ``steps`` updates from ``state`` (fresh noise when None).

        Returns the final state and the logits after each step listed in
        ``logit_steps`` (all steps when None).
        """
        cell_input = self.encode_image(image)
        if state is None:
            h, w = cell_input.shape[-2:]
            state = self.initial_state(image.shape[0], h, w, generator)
        logits = {}
        for t in range(1, steps + 1):
            state, _ = self.step(state, cell_input, generator=generator)
            if logit_steps is None or t in logit_steps:
                logits[t] = self.logits(state)
        return state, logits

    # -- rule files ----------------------------------------------------------------------

    def to_rule(self, metadata: dict | None = None) -> Rule:
        """Export the weights into a :class:`~nca_sim.rule.Rule` (float32, rule-file layouts)."""
        shapes = weight_shapes(self.arch)
        params = {name: value.detach().cpu().float().numpy() for name, value in self.state_dict().items()}
        weights = {name: params[name].reshape(shape) for name, shape in shapes.items()}
        return Rule(self.arch, weights, dict(metadata or {}))

    @classmethod
    def from_rule(cls, rule: Rule) -> "SegmentationNCA":
        """Rebuild the PyTorch model from a rule (the analyses use it for gradients)."""
        model = cls(rule.architecture)
        state = model.state_dict()
        loaded = {name: torch.from_numpy(rule.weights[name].copy()).reshape(state[name].shape) for name in state}
        model.load_state_dict(loaded)
        return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
