"""The six networks of attention-guided translation, as in the released code (method.md).

Naming: the paper's source domain S is our domain ``a`` and its target T is ``b`` (the folder names
``trainA``/``trainB``). ``attention_a`` is the paper's A_S, ``generator_a2b`` is F_S->T, and
``discriminator_b`` (D_T) judges domain-B images.

Every network is fully convolutional: any input whose height and width are multiples of 4 works.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from aggan.config import VARIANTS, GeneratorUpsample, ModelConfig

Direction = Literal["a2b", "b2a"]
DIRECTIONS: tuple[Direction, Direction] = ("a2b", "b2a")


def source_domain(direction: Direction) -> str:
    """``"a2b"`` -> ``"a"``."""
    return direction[0]


def target_domain(direction: Direction) -> str:
    """``"a2b"`` -> ``"b"``."""
    return direction[-1]


def reverse(direction: Direction) -> Direction:
    """``"a2b"`` -> ``"b2a"``: the way back, for the cycle."""
    return "b2a" if direction == "a2b" else "a2b"


def memory_layout(images: Tensor) -> torch.memory_format:
    """Channels-last if ``images`` are, else contiguous: what a layer hands on."""
    return (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format)


class _ChannelsLastInstanceNorm(torch.autograd.Function):
    """Instance norm of a channels-last batch: batch norm in training mode on each image.

    The forward writes every image into one output, where splitting the batch and
    concatenating the results copied each activation once more forward and once more backward
    (the backward of a split is a concatenation): 8% of a 256 px step at batch 4 (measured).
    A batch of one is never copied.
    """

    @staticmethod
    def forward(ctx: Any, images: Tensor, weight: Tensor, bias: Tensor,
                eps: float) -> Tensor:
        normalized = torch.empty_like(images)
        stats = images.new_empty((2, *images.shape[:2]), dtype=weight.dtype)
        for i in range(len(images)):
            torch.ops.aten.native_batch_norm.out(
                images[i:i + 1], weight, bias, None, None, True, 0.0, eps,
                out=normalized[i:i + 1], save_mean=stats[0, i], save_invstd=stats[1, i])
        ctx.save_for_backward(images, weight, stats)
        ctx.eps = eps
        return normalized

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        images, weight, stats = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        # Not the out= form here: torch implements that one as this plus a copy.
        grad_images, grad_weight, grad_bias = zip(*(
            torch.ops.aten.native_batch_norm_backward(
                grad[i:i + 1], images[i:i + 1], weight, None, None, stats[0, i], stats[1, i],
                True, ctx.eps, [True, True, True])
            for i in range(len(images))), strict=True)
        if len(images) == 1:
            return grad_images[0], grad_weight[0], grad_bias[0], None
        return (torch.cat(grad_images), torch.stack(grad_weight).sum(0),
                torch.stack(grad_bias).sum(0), None)


class InstanceNorm(nn.InstanceNorm2d):
    """Instance norm with a learned affine, fast and correct in both memory formats.

    ``nn.InstanceNorm2d`` copies a channels-last input to contiguous and back, and in torch 2.14.1
    on CPU its input and weight gradients are wrong for a channels-last batch of one (measured:
    off by 17 and 210 where float64 gives 1e-6). Batch norm in training mode on one image
    without running statistics is the same normalisation, with native kernels for both formats.
    ``tests/test_networks.py`` checks both formats against a float64 reference.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, affine=True)

    def forward(self, images: Tensor) -> Tensor:
        if images.is_contiguous() or not images.is_contiguous(
                memory_format=torch.channels_last):
            return super().forward(images)
        return _ChannelsLastInstanceNorm.apply(images, self.weight, self.bias, self.eps)


class NarrowConv2d(nn.Conv2d):
    """A stride-1 conv to one or three channels (the image and mask outputs), same parameters.

    On CPU it runs as the transposed convolution with the flipped kernel, the same sum:
    oneDNN fills only 1 or 3 of its 16 vector lanes in the backward of a conv with so few
    outputs, and the transposed form's backward is a conv *from* few channels, which it does
    well. Forward and backward of a 32 -> 1 and 32 -> 3 7x7 conv at 256 px: 32 and 34 ms
    direct, 19 and 23 ms transposed (measured, channels-last, 2 threads). Elsewhere (GPUs,
    unmeasured) it stays the plain conv.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int,
                 padding_mode: str = "zeros") -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2,
                         padding_mode=padding_mode)

    def forward(self, images: Tensor) -> Tensor:
        if images.device.type != "cpu":
            return super().forward(images)
        padding = self.padding[0]
        if self.padding_mode != "zeros" and padding:
            images = F.pad(images, (padding,) * 4, mode=self.padding_mode)
            padding = 0
        return F.conv_transpose2d(images, self.weight.flip(2, 3).transpose(0, 1), self.bias,
                                  padding=self.kernel_size[0] - 1 - padding)


class UpsampledConv2d(nn.Conv2d):
    """Nearest-neighbour 2x upsampling, then a stride-1 conv padded by kernel // 2 (zeros or
    reflect): one module.

    Every output pixel of that pair reads the small input through a 2x2 (kernel 3) or 1x1
    (kernel 1) window whose taps are sums of the conv's taps, so the pair is one stride-2
    transposed conv on the small input with a kernel built from the conv's weight: the same
    function and parameters, 16/36 of the multiply-adds, no upsampled copy. Forward and
    backward of the attention's 64 -> 32 conv at 256 px: 106 ms upsampled, 25 ms in this form
    (measured, CPU, channels-last). Reflect-padding the upsampled image by one pixel repeats its
    edge pixel, which is upsampling the input with its edge repeated: so with reflect padding
    the input is edge-padded by one pixel and the transposed conv crops two more upsampled
    pixels on each side. (Kernels up to 3: a wider reflection is not an upsampled padding.)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int,
                 padding_mode: str = "zeros") -> None:
        if padding_mode not in ("zeros", "reflect") or (padding_mode == "reflect"
                                                        and kernel > 3):
            raise ValueError(f"UpsampledConv2d: padding {padding_mode!r} with kernel {kernel}")
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2,
                         padding_mode=padding_mode)
        # The transposed conv (stride 2, padding p = kernel // 2) gives output row o the input
        # row m through its tap o + p - 2m; the conv's tap r of output row o reads upsampled
        # row o + r - p, which is input row m = (o + r - p) // 2: transposed tap
        # 2p - r + (o + r - p) % 2, one of 2p + 2, and only the parity of o matters.
        p = kernel // 2
        taps = torch.zeros(2 * p + 2, kernel)
        for parity in (0, 1):
            for r in range(kernel):
                taps[2 * p - r + (parity + r - p) % 2, r] = 1
        self.register_buffer("taps", taps, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        weight = torch.einsum("tr,oirc,uc->iotu", self.taps, self.weight, self.taps)
        layout = memory_layout(images)
        crop = self.padding[0]
        if self.padding_mode == "reflect" and crop:
            # Edges repeated by concatenation: torch.compile's inductor (torch 2.14.1) mis-strides
            # the backward of a replicate F.pad on channels-last input.
            images = torch.cat([images[..., :1, :], images, images[..., -1:, :]], dim=-2)
            images = torch.cat([images[..., :1], images, images[..., -1:]], dim=-1)
            crop += 2
        return F.conv_transpose2d(images, weight.contiguous(memory_format=layout), self.bias,
                                  stride=2, padding=crop)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one dimension (before, after): the output has
    ceil(size / stride) pixels, and an odd total puts the extra pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A conv with TensorFlow's ``SAME`` zero padding, as the released code's stride-2 convs
    have: at an even size and stride 2 nothing goes top and left and one pixel bottom and right,
    where PyTorch's ``padding=1`` pads both sides and samples every other pixel one pixel
    earlier (a shift of one pixel against the released graph)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=0)

    def forward(self, images: Tensor) -> Tensor:
        (kernel, _), (stride, _) = self.kernel_size, self.stride
        top, bottom = same_padding(images.shape[-2], kernel, stride)
        left, right = same_padding(images.shape[-1], kernel, stride)
        return super().forward(F.pad(images, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """A transposed conv with TensorFlow's ``SAME`` output: ``stride`` x the input's size, taken
    from the full output starting at row and column ``same_padding``'s before (0 for kernel 3,
    stride 2: the first 2n of 2n + 1 rows; PyTorch's ``padding=1, output_padding=1`` keeps the
    last 2n, a shift of one pixel)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=0)

    def forward(self, images: Tensor) -> Tensor:  # type: ignore[override]
        (kernel, _), (stride, _) = self.kernel_size, self.stride
        height, width = (stride * size for size in images.shape[-2:])
        top = same_padding(height, kernel, stride)[0]
        left = same_padding(width, kernel, stride)[0]
        full = super().forward(images)
        layout = memory_layout(images)
        return full[..., top:top + height, left:left + width].contiguous(memory_format=layout)


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
                for domain in ("a", "b")})

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: torch.device | str = "cpu"
                        ) -> Translator:
        """A model folder (``config.json`` + ``model.safetensors``, as ``aggan export-weights``
        writes it), the name of a model shipped in ``models/`` or a Hugging Face Hub id
        (with ``huggingface_hub`` installed), in eval mode. No pickle is read.

        The networks expect images at the model's training size; ``aggan.translate.
        translate_tensor(..., scale_px=...)`` applies them to photos of any size, and
        ``aggan.model_folder.load_model`` also returns the config (``config.data.size_px``).
        """
        from aggan.model_folder import load_model

        return load_model(name_or_path, torch.device(device)).translator

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
            domain: PatchDiscriminator(width=config.discriminator_width) for domain in ("a", "b")})

    def forward(self, images: Tensor, domain: str, normalize: bool = True) -> Tensor:
        return self.by_domain[domain](images, normalize)
