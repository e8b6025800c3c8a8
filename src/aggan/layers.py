"""The building blocks that make the networks match the released TensorFlow code bit for bit where
PyTorch's own layers differ (TensorFlow's "same" padding, its transposed convolution's crop), and
a channels-last instance norm for the CPU (method.md, "Networks").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
