"""The six networks of attention-guided translation, as in the released code (method.md).

Naming (``domains``): ``attention_a`` is the paper's A_S, ``generator_a2b`` is F_S->T, and
``discriminator_b`` (D_T) judges domain-B images.

Every network is fully convolutional: any input whose height and width are multiples of 4 works.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from aggan.config import VARIANTS, GeneratorUpsample, ModelConfig
from aggan.domains import DIRECTIONS, DOMAINS, Direction, source_domain
from aggan.layers import (
    InstanceNorm,
    NarrowConv2d,
    SameConv2d,
    SameConvTranspose2d,
    UpsampledConv2d,
)


def _upsampling_conv(kind: GeneratorUpsample, in_channels: int, out_channels: int) -> nn.Module:
    """The generator's 2x upsampling step: a stride-2 3x3 transposed conv (released) or 2x
    nearest upsampling and a zero-padded 3x3 conv."""
    if kind == "transpose":
        return SameConvTranspose2d(in_channels, out_channels, 3, stride=2)
    return UpsampledConv2d(in_channels, out_channels, 3)


def _norm_relu(channels: int) -> list[nn.Module]:
    return [InstanceNorm(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """pad 1, conv3, IN, ReLU, pad 1, conv3, IN, skip add, then ReLU (released code; CycleGAN
    has no final ReLU). The generator's blocks pad with zeros, the attention's by reflection."""

    def __init__(self, channels: int, padding_mode: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode),
            *_norm_relu(channels),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode),
            InstanceNorm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        # In place on the norm's fresh output (its backward does not need it): two
        # activation-sized buffers fewer per block, same sum.
        return self.body(x).add_(x).relu_()


class ResnetGenerator(nn.Module):
    """F: image in [-1, 1] -> image in [-1, 1], same size (``build_generator_resnet_9blocks``).

    Args:
        width: channels of the first conv (released code: 32, half of CycleGAN's 64).
        blocks: residual blocks at 1/4 resolution (9 for 256 px).
        upsample: ``"transpose"`` (released code) or ``"resize"``: each stride-2 transposed
            conv replaced by nearest-neighbour upsampling and a zero-padded 3x3 conv.
    """

    def __init__(self, *, width: int = 32, blocks: int = 9,
                 upsample: GeneratorUpsample = "transpose") -> None:
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            nn.Conv2d(3, w, 7, padding=3),  # zero pad 3, VALID
            *_norm_relu(w),
            SameConv2d(w, 2 * w, 3, stride=2),
            *_norm_relu(2 * w),
            SameConv2d(2 * w, 4 * w, 3, stride=2),
            *_norm_relu(4 * w),
            *[ResidualBlock(4 * w, padding_mode="zeros") for _ in range(blocks)],
            _upsampling_conv(upsample, 4 * w, 2 * w),
            *_norm_relu(2 * w),
            _upsampling_conv(upsample, 2 * w, w),
            *_norm_relu(w),
            NarrowConv2d(w, 3, 7),  # SAME at stride 1: zero pad 3 on each side
            nn.Tanh(),
        )
        self.trunk_end = 9 + blocks  # the encoder's 9 layers, then the residual blocks

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [-1, 1]; H, W multiples of 4."""
        return self.layers(images)

    def features(self, images: Tensor) -> Tensor:
        """What the residual blocks make of the image: (N, 4 x width, H/4, W/4)."""
        return self.layers[:self.trunk_end](images)

    def output(self, features: Tensor) -> Tensor:
        """The image from ``features``: ``generator.output(generator.features(x))`` is
        ``generator(x)``."""
        return self.layers[self.trunk_end:](features)


def _mask_decoder(width: int, kernels: tuple[int, int, int]) -> list[nn.Module]:
    """The attention's decoder: 2 x width channels at 1/4 size -> the mask at full size (two
    nearest-upsampling convs and a last conv, reflect-padded; a sigmoid)."""
    k1, k2, k3 = kernels
    w = width
    return [
        UpsampledConv2d(2 * w, 2 * w, k1, padding_mode="reflect"),
        *_norm_relu(2 * w),
        UpsampledConv2d(2 * w, w, k2, padding_mode="reflect"),
        *_norm_relu(w),
        NarrowConv2d(w, 1, k3, padding_mode="reflect"),
        nn.Sigmoid(),
    ]


class AttentionNet(nn.Module):
    """A: image in [-1, 1] -> one-channel mask in [0, 1], same size (``autoenc_upsample``).

    Args:
        width: channels of the first conv.
        kernels: ``"paper"`` for the intended 3x3, 3x3, 7x7 convs after upsampling, with the
            reflect padding (1, 1, 3) of the released code's commented-out lines;
            ``"official-1x1"`` for the released code's 1x1 convs (an argument-order bug there).
    """

    def __init__(self, *, width: int = 32,
                 kernels: Literal["paper", "official-1x1"] = "paper") -> None:
        super().__init__()
        if kernels not in ("paper", "official-1x1"):
            raise ValueError(f"unknown attention kernels {kernels!r}")
        k1, k2, k3 = (3, 3, 7) if kernels == "paper" else (1, 1, 1)
        w = width
        self.layers = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, w, 7, stride=2, padding=0),
            *_norm_relu(w),
            SameConv2d(w, 2 * w, 3, stride=2),
            *_norm_relu(2 * w),
            ResidualBlock(2 * w, padding_mode="reflect"),
            *_mask_decoder(w, (k1, k2, k3)),
        )

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) in [0, 1]; H, W multiples of 4."""
        return self.layers(images)


class FeatureAttentionHead(nn.Module):
    """A from the generator's residual features (N, 4 x width, H/4, W/4) -> one-channel mask in
    [0, 1] at full size.

    A 3x3 conv down to the attention's 2 x width channels, then the attention network's own
    decoder (two nearest-upsampling 3x3 convs, a 7x7 conv, reflect padding): the mask of
    ``AttentionNet`` with the generator's encoder and nine residual blocks in place of its own
    two convs and one block. Upsampling convs, not the generator's transposed convs, whose
    checkerboard the mask would copy (measured: reading the generator's last full-size features
    the masks became a lattice of dots).
    """

    def __init__(self, *, generator_width: int = 32, width: int = 32) -> None:
        super().__init__()
        w = width
        self.layers = nn.Sequential(
            nn.Conv2d(4 * generator_width, 2 * w, 3, padding=1, padding_mode="reflect"),
            *_norm_relu(2 * w),
            *_mask_decoder(w, (3, 3, 7)),  # the paper's kernels
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)


class PatchDiscriminator(nn.Module):
    """70 x 70 PatchGAN: image -> (N, 1, h, w) raw least-squares scores; zero padding 2 before
    every conv as released (35 x 35 scores at 256 px).

    Instance norm follows the first four convs until the switch epoch; ``normalize=False`` skips
    it afterwards, because the zeros outside the hard mask would dominate its statistics.
    """

    def __init__(self, *, width: int = 64) -> None:
        super().__init__()
        w = width
        channels = [3, w, 2 * w, 4 * w, 8 * w]
        strides = [2, 2, 2, 1]
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], 4, strides[i], padding=2) for i in range(4))
        self.norms = nn.ModuleList(InstanceNorm(c) for c in channels[1:])
        self.head = nn.Conv2d(8 * w, 1, 4, stride=1, padding=2)

    def forward(self, images: Tensor, normalize: bool = True) -> Tensor:
        x = images
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = conv(x)
            if normalize:
                x = norm(x)
            x = F.leaky_relu(x, 0.2)
        return self.head(x)


def init_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """The released code's init: conv weights N(0, 0.02) and instance-norm scales N(1, 0.02),
    both truncated at 2 std (TensorFlow's truncated normal), biases and offsets 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.trunc_normal_(m.weight, 0.0, 0.02, -0.04, 0.04, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            nn.init.trunc_normal_(m.weight, 1.0, 0.02, 0.96, 1.04, generator=generator)
            nn.init.zeros_(m.bias)


def composite(mask: Tensor, translated: Tensor, images: Tensor) -> Tensor:
    """s' = m * F(s) + (1 - m) * s: only the attended region changes."""
    return mask * translated + (1 - mask) * images


class Translator(nn.Module):
    """The translation half of the model: both generators and both attention networks.

    This is all that ``translate`` needs; a ``cyclegan`` variant has no attention networks and
    its mask is 1 everywhere.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.generators = nn.ModuleDict({
            d: ResnetGenerator(width=config.generator_width, blocks=config.generator_blocks,
                               upsample=config.generator_upsample)
            for d in DIRECTIONS})
        self.attention_from = config.attention_from
        self.attention: nn.ModuleDict | None = None
        if VARIANTS[config.variant].attention:
            self.attention = nn.ModuleDict({
                domain: FeatureAttentionHead(generator_width=config.generator_width,
                                             width=config.attention_width)
                if config.attention_from == "generator"
                else AttentionNet(width=config.attention_width, kernels=config.attention_kernels)
                for domain in DOMAINS})

    def forward(self, images: Tensor, direction: Direction,
                use_attention: bool = True) -> tuple[Tensor, Tensor]:
        """Translates a batch.

        Args:
            images: (N, 3, H, W) in [-1, 1] from the source domain; H, W multiples of 4.
            direction: ``"a2b"`` or ``"b2a"``.
            use_attention: False fixes the mask at 1 (CycleGAN; the warm-up phase).

        Returns:
            The translation (N, 3, H, W) in [-1, 1] and the mask (N, 1, H, W) in [0, 1].
        """
        translated, mask = self.parts(images, direction, use_attention)
        return composite(mask, translated, images), mask

    def parts(self, images: Tensor, direction: Direction,
              use_attention: bool = True) -> tuple[Tensor, Tensor]:
        """The generator's output F(s) and the mask A(s), before they are composited."""
        generator = self.generators[direction]
        if self.attention is None or not use_attention:
            return generator(images), torch.ones_like(images[:, :1])
        attention = self.attention[source_domain(direction)]
        if self.attention_from == "generator":
            features = generator.features(images)
            return generator.output(features), attention(features.detach())
        return generator(images), attention(images)


class Discriminators(nn.Module):
    """``discriminator_a`` judges domain-A images, ``discriminator_b`` domain-B images."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.by_domain = nn.ModuleDict({
            domain: PatchDiscriminator(width=config.discriminator_width) for domain in DOMAINS})

    def forward(self, images: Tensor, domain: str, normalize: bool = True) -> Tensor:
        return self.by_domain[domain](images, normalize)
