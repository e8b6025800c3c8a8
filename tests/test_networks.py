"""Network shapes, value ranges, init and the discriminator's norm switch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from aggan.config import ModelConfig
from aggan.networks import (
    AttentionNet,
    InstanceNorm,
    NarrowConv2d,
    PatchDiscriminator,
    ResnetGenerator,
    Translator,
    UpsampledConv2d,
    composite,
    init_weights,
)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (64, 64), (36, 100), (256, 256)])
def test_generator_and_attention_keep_size_and_range(height: int, width: int) -> None:
    images = torch.rand(2, 3, height, width) * 2 - 1
    generator = ResnetGenerator(width=8, blocks=2)
    init_weights(generator)
    out = generator(images)
    assert out.shape == images.shape
    assert out.min() >= -1 and out.max() <= 1
    for kernels in ("paper", "official-1x1"):
        mask = AttentionNet(width=8, kernels=kernels)(images)
        assert mask.shape == (2, 1, height, width)
        assert mask.min() >= 0 and mask.max() <= 1


def test_default_architecture_matches_released_code() -> None:
    generator = ResnetGenerator()
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 32 and convs[0].kernel_size == (7, 7)
    assert sum(1 for m in generator.modules() if type(m).__name__ == "ResidualBlock") == 9
    paper = AttentionNet(kernels="paper")
    official = AttentionNet(kernels="official-1x1")
    kernel_sizes = [m.kernel_size for m in paper.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernel_sizes[-3:] == [(3, 3), (3, 3), (7, 7)]
    kernel_sizes = [m.kernel_size for m in official.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernel_sizes[-3:] == [(1, 1), (1, 1), (1, 1)]
    first = next(m for m in paper.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.stride == (2, 2) and first.kernel_size == (7, 7)


@pytest.mark.parametrize("size", [32, 64, 256])
def test_patch_discriminator_shape(size: int) -> None:
    scores = PatchDiscriminator(width=8)(torch.zeros(1, 3, size, size))
    side = size // 8 - 2
    assert scores.shape == (1, 1, side, side)


def test_discriminator_normalize_flag_changes_output() -> None:
    discriminator = PatchDiscriminator(width=8)
    init_weights(discriminator)
    images = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(discriminator(images, True), discriminator(images, False))


def test_init_statistics() -> None:
    generator = ResnetGenerator(width=32, blocks=2)
    init_weights(generator, torch.Generator().manual_seed(0))
    weights = torch.cat([m.weight.flatten() for m in generator.modules()
                         if isinstance(m, torch.nn.Conv2d)])
    assert weights.abs().max() <= 0.04 + 1e-7  # truncated at 2 std
    assert 0.015 < weights.std() < 0.02  # a normal truncated at 2 std has std 0.88 * 0.02
    scales = torch.cat([m.weight.detach() for m in generator.modules()
                        if isinstance(m, torch.nn.InstanceNorm2d)])
    assert abs(float(scales.mean()) - 1) < 0.01


def test_composite_only_changes_attended_region() -> None:
    images, translated = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    out = composite(mask, translated, images)
    assert out[..., :2, :].eq(1).all() and out[..., 2:, :].eq(0).all()


def test_translator_variants() -> None:
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    cyclegan = Translator(ModelConfig(variant="cyclegan", generator_width=8, generator_blocks=1))
    assert cyclegan.attention is None
    out, mask = cyclegan(images, "a2b")
    assert mask.eq(1).all() and out.shape == images.shape
    aggan = Translator(ModelConfig(generator_width=8, generator_blocks=1, attention_width=8))
    out, mask = aggan(images, "b2a")
    assert mask.shape == (1, 1, 32, 32) and not mask.eq(1).all()
    _, warm_up_mask = aggan(images, "b2a", use_attention=False)
    assert warm_up_mask.eq(1).all()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_instance_norm_matches_float64_reference(batch: int, channels_last: bool) -> None:
    """Values and gradients in both memory formats (torch's own instance norm gets the
    channels-last gradients of a batch of one wrong on CPU; ours must not)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    images = torch.randn(batch, 16, 12, 10, dtype=torch.float64) * 3 + 1
    upstream = torch.randn_like(images)
    norm = InstanceNorm(16)
    torch.nn.init.normal_(norm.weight, 1.0, 0.5)
    torch.nn.init.normal_(norm.bias, 0.0, 0.5)

    def run(dtype: torch.dtype, format_: torch.memory_format, reference: bool) -> list:
        x = images.to(dtype).contiguous(memory_format=format_).clone().requires_grad_()
        weight = norm.weight.detach().to(dtype).clone().requires_grad_()
        bias = norm.bias.detach().to(dtype).clone().requires_grad_()
        if reference:  # the definition, in float64
            mean = x.mean((2, 3), keepdim=True)
            var = x.var((2, 3), keepdim=True, unbiased=False)
            out = (x - mean) / torch.sqrt(var + norm.eps) * weight[:, None, None] + bias[
                :, None, None]
        else:
            layer = InstanceNorm(16).to(dtype)
            layer.weight, layer.bias = torch.nn.Parameter(weight), torch.nn.Parameter(bias)
            out = layer(x)
            weight, bias = layer.weight, layer.bias
        out.backward(upstream.to(dtype).contiguous(memory_format=format_))
        assert out.is_contiguous(memory_format=format_)
        return [out.double(), x.grad.double(), weight.grad.double(), bias.grad.double()]

    expected = run(torch.float64, torch.contiguous_format, reference=True)
    actual = run(torch.float32, layout, reference=False)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kernel", "out_channels"), [(7, 3), (7, 1), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_narrow_conv_equals_plain_conv(kernel: int, out_channels: int,
                                       channels_last: bool) -> None:
    """The output layers' transposed-conv form: same values and gradients as ``nn.Conv2d``."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    narrow = NarrowConv2d(8, out_channels, kernel)
    plain = torch.nn.Conv2d(8, out_channels, kernel, padding=kernel // 2)
    plain.load_state_dict(narrow.state_dict())
    images = torch.randn(2, 8, 20, 12, generator=generator).contiguous(memory_format=layout)
    upstream = torch.randn(2, out_channels, 20, 12, generator=generator)

    def run(conv: torch.nn.Conv2d) -> list[torch.Tensor]:
        x = images.clone().requires_grad_()
        out = conv(x)
        out.backward(upstream)
        return [out.detach(), x.grad, conv.weight.grad, conv.bias.grad]

    for got, want in zip(run(narrow), run(plain), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 7])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampled_conv_equals_upsample_then_conv(kernel: int, channels_last: bool) -> None:
    """The attention's upsampling layers as one transposed conv: same values and gradients."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    fused = UpsampledConv2d(6, 5, kernel)
    torch.nn.init.normal_(fused.bias, generator=generator)
    images = torch.randn(2, 6, 9, 7, generator=generator).contiguous(memory_format=layout)
    upstream = torch.randn(2, 5, 18, 14, generator=generator)

    def run(forward: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        x = images.clone().requires_grad_()
        fused.zero_grad()
        out = forward(x)
        out.backward(upstream)
        return [out.detach(), x.grad, fused.weight.grad.clone(), fused.bias.grad.clone()]

    def reference(x: torch.Tensor) -> torch.Tensor:
        upsampled = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return torch.nn.functional.conv2d(upsampled, fused.weight, fused.bias,
                                          padding=kernel // 2)

    got = run(fused)
    assert got[0].shape == (2, 5, 18, 14) and got[0].is_contiguous(memory_format=layout)
    for actual, want in zip(got, run(reference), strict=True):
        torch.testing.assert_close(actual, want, rtol=1e-5, atol=1e-5)
