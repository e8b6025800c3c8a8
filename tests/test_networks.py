"""Network shapes, value ranges, init and the discriminator's norm switch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from aggan.config import ModelConfig
from aggan.layers import (
    InstanceNorm,
    NarrowConv2d,
    SameConv2d,
    SameConvTranspose2d,
    UpsampledConv2d,
    same_padding,
)
from aggan.networks import (
    AttentionNet,
    PatchDiscriminator,
    ResnetGenerator,
    Translator,
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


# Each layer of the released networks at 256 x 256: (where in the released model.py, kind,
# kernel, stride, padding mode, padding (top, bottom, left, right), output (C, H, W)). Read from
# AlamiMejjati/Unsupervised-Attention-guided-Image-to-Image-Translation, model.py at commit
# 862b4074 (with layers.py: general_conv2d's kernel and stride are its f_w and s_w). A "same" pad
# is TensorFlow's SAME: at stride 2 on an even size nothing top/left, one pixel bottom/right. For
# a transposed conv the padding is what SAME crops from its full (2n + 1)-pixel output. "up2" is
# a nearest 2x upsampling before the conv, whose padding applies to the upsampled image.
ZEROS_1 = ("zeros", (1, 1, 1, 1))
SAME_S2 = ("zeros", (0, 1, 0, 1))
RELEASED_GENERATOR = [
    ("L182-186 c1", "conv", 7, 1, "zeros", (3, 3, 3, 3), (32, 256, 256)),
    ("L188-189 c2", "conv", 3, 2, *SAME_S2, (64, 128, 128)),
    ("L191-192 c3", "conv", 3, 2, *SAME_S2, (128, 64, 64)),
    *[(f"L{194 + block} r{block} {conv} (L145-151, CONSTANT)", "conv", 3, 1, *ZEROS_1,
       (128, 64, 64)) for block in range(1, 10) for conv in ("c1", "c2")],
    ("L205-207 c4", "transposed", 3, 2, *SAME_S2, (64, 128, 128)),
    ("L209-211 c5", "transposed", 3, 2, *SAME_S2, (32, 256, 256)),
    ("L213-214 c6", "conv", 7, 1, "zeros", (3, 3, 3, 3), (3, 256, 256)),
]
RELEASED_ATTENTION = [
    ("L107-110 c1", "conv", 7, 2, "reflect", (3, 3, 3, 3), (32, 128, 128)),
    ("L111-112 c2", "conv", 3, 2, *SAME_S2, (64, 64, 64)),
    ("L114 r1 c1 (L166-169, REFLECT)", "conv", 3, 1, "reflect", (1, 1, 1, 1), (64, 64, 64)),
    ("L114 r1 c2 (L170-172, REFLECT)", "conv", 3, 1, "reflect", (1, 1, 1, 1), (64, 64, 64)),
    # The intended 3x3, 3x3, 7x7 with the commented-out reflect pads of L119, L125, L128.
    ("L117-120 up1 c4", "up2 conv", 3, 1, "reflect", (1, 1, 1, 1), (64, 128, 128)),
    ("L123-126 up2 c5", "up2 conv", 3, 1, "reflect", (1, 1, 1, 1), (32, 256, 256)),
    ("L128-130 c6", "conv", 7, 1, "reflect", (3, 3, 3, 3), (1, 256, 256)),
]
# As the code runs: the argument-order bug makes c4, c5, c6 1x1 (VALID, nothing to pad).
RELEASED_ATTENTION_1X1 = [*RELEASED_ATTENTION[:4],
                          ("L117-120 up1 c4", "up2 conv", 1, 1, "zeros", (0, 0, 0, 0),
                           (64, 128, 128)),
                          ("L123-126 up2 c5", "up2 conv", 1, 1, "zeros", (0, 0, 0, 0),
                           (32, 256, 256)),
                          ("L128-130 c6", "conv", 1, 1, "zeros", (0, 0, 0, 0), (1, 256, 256))]
RELEASED_DISCRIMINATOR = [
    ("L230-235 c1", "conv", 4, 2, "zeros", (2, 2, 2, 2), (64, 129, 129)),
    ("L237-241 c2", "conv", 4, 2, "zeros", (2, 2, 2, 2), (128, 65, 65)),
    ("L243-247 c3", "conv", 4, 2, "zeros", (2, 2, 2, 2), (256, 33, 33)),
    ("L249-253 c4", "conv", 4, 1, "zeros", (2, 2, 2, 2), (512, 34, 34)),
    ("L255-259 c5", "conv", 4, 1, "zeros", (2, 2, 2, 2), (1, 35, 35)),
]


def _geometry(network: torch.nn.Module, size: int = 256) -> list[tuple]:
    """(kind, kernel, stride, padding mode, (top, bottom, left, right), output (C, H, W)) of
    every convolution, in the order they run, from the modules and their inputs' shapes."""
    rows: list[tuple] = []
    pending_pad: list[tuple] = []

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        height, width = inputs[0].shape[-2:]
        if isinstance(module, torch.nn.ReflectionPad2d):
            left, right, top, bottom = module.padding
            pending_pad.append(("reflect", (top, bottom, left, right)))
            return
        kernel, stride = module.kernel_size[0], module.stride[0]
        if isinstance(module, SameConv2d):
            mode = "zeros"
            pads = (*same_padding(height, kernel, stride), *same_padding(width, kernel, stride))
        elif isinstance(module, SameConvTranspose2d):
            mode = "zeros"  # what SAME crops from the full output
            before_h = same_padding(stride * height, kernel, stride)[0]
            before_w = same_padding(stride * width, kernel, stride)[0]
            full_h, full_w = (height - 1) * stride + kernel, (width - 1) * stride + kernel
            pads = (before_h, full_h - output.shape[-2] - before_h,
                    before_w, full_w - output.shape[-1] - before_w)
        else:
            mode = module.padding_mode if module.padding[0] else "zeros"
            pads = (module.padding[0],) * 4
        if pending_pad:
            mode, pads = pending_pad.pop()
            assert module.padding[0] == 0
        kind = {SameConvTranspose2d: "transposed", UpsampledConv2d: "up2 conv"}.get(
            type(module), "conv")
        stride = 1 if kind == "up2 conv" else stride
        rows.append((kind, kernel, stride, mode, pads, tuple(output.shape[1:])))

    handles = [m.register_forward_hook(hook) for m in network.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d
                             | torch.nn.ReflectionPad2d)]
    with torch.no_grad():
        network(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return rows


@pytest.mark.parametrize(("network", "released"), [
    (lambda: ResnetGenerator(), RELEASED_GENERATOR),
    (lambda: AttentionNet(kernels="paper"), RELEASED_ATTENTION),
    (lambda: AttentionNet(kernels="official-1x1"), RELEASED_ATTENTION_1X1),
    (lambda: PatchDiscriminator(), RELEASED_DISCRIMINATOR),
], ids=["generator", "attention", "attention-1x1", "discriminator"])
def test_layers_match_the_released_geometry(network: Callable[[], torch.nn.Module],
                                            released: list[tuple]) -> None:
    ours = _geometry(network())
    assert len(ours) == len(released)
    for row, (where, *expected) in zip(ours, released, strict=True):
        assert row == tuple(expected), where


def test_same_conv_pads_like_tensorflow() -> None:
    """SAME at stride 2: the window of output pixel o starts at input pixel 2o (TensorFlow),
    not 2o - 1 (PyTorch's padding=1)."""
    conv = SameConv2d(2, 3, 3, stride=2)
    images = torch.randn(1, 2, 8, 6)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(images, (0, 1, 0, 1)),
                                          conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(conv(images), expected)
    shifted = torch.nn.functional.conv2d(images, conv.weight, conv.bias, stride=2, padding=1)
    assert not torch.allclose(conv(images), shifted)
    assert same_padding(7, 3, 2) == (1, 1)  # odd sizes pad both sides, as TensorFlow does


def test_same_transposed_conv_keeps_the_first_rows_like_tensorflow() -> None:
    conv = SameConvTranspose2d(2, 3, 3, stride=2)
    images = torch.randn(1, 2, 4, 5)
    full = torch.nn.functional.conv_transpose2d(images, conv.weight, conv.bias, stride=2)
    assert full.shape[-2:] == (9, 11)
    torch.testing.assert_close(conv(images), full[..., :8, :10])
    pytorch_style = torch.nn.functional.conv_transpose2d(
        images, conv.weight, conv.bias, stride=2, padding=1, output_padding=1)
    assert not torch.allclose(conv(images), pytorch_style)
    layout = images.contiguous(memory_format=torch.channels_last)
    assert conv(layout).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("size", "side"), [(32, 7), (64, 11), (256, 35)])
def test_patch_discriminator_shape(size: int, side: int) -> None:
    scores = PatchDiscriminator(width=8)(torch.zeros(1, 3, size, size))
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
    assert (scales - 1).abs().max() <= 0.04 + 1e-7  # truncated at 2 std, as released


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


def test_generator_features_then_output_is_the_generator() -> None:
    images = torch.rand(2, 3, 32, 36) * 2 - 1
    generator = ResnetGenerator(width=8, blocks=1)
    init_weights(generator, torch.Generator().manual_seed(0))
    features = generator.features(images)
    assert features.shape == (2, 32, 8, 9)
    assert torch.equal(generator.output(features), generator(images))


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_resize_upsampling_prints_no_checkerboard(upsample: str) -> None:
    """Flat features (as a flat photo makes away from its borders) come out of the transposed
    convs with a period-2 pattern, the uneven overlap of stride-2 windows; out of the resize
    convs they come out flat."""
    generator = ResnetGenerator(width=8, blocks=1, upsample=upsample)
    init_weights(generator, torch.Generator().manual_seed(0))
    flat = torch.randn(1, 32, 1, 1).expand(1, 32, 16, 16)
    with torch.no_grad():
        interior = generator.output(flat)[..., 16:48, 16:48]
    assert interior.shape == (1, 3, 32, 32)
    rows_apart = (interior[..., 0::2, :] - interior[..., 1::2, :]).abs().amax()
    if upsample == "transpose":
        assert rows_apart > 1e-2
    else:
        assert interior.std(dim=(-2, -1)).amax() < 1e-5 and rows_apart < 1e-5


def _mask_after_changing_the_generator(attention_from: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    translator = Translator(ModelConfig(generator_width=8, generator_blocks=1, attention_width=8,
                                        attention_from=attention_from))
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    _, before = translator.parts(images, "a2b")
    with torch.no_grad():
        first_conv = translator.generators["a2b"].layers[0].weight
        first_conv.add_(torch.randn_like(first_conv))  # not a scale: instance norm undoes that
    _, after = translator.parts(images, "a2b")
    return before, after


def test_generator_attention_reads_the_generators_features() -> None:
    before, after = _mask_after_changing_the_generator("generator")
    assert before.shape == (1, 1, 32, 32) and before.min() >= 0 and before.max() <= 1
    assert not torch.allclose(before, after)
    before, after = _mask_after_changing_the_generator("image")
    assert torch.equal(before, after)


def test_generator_attention_does_not_train_the_generator() -> None:
    """The attention's own losses (area floor, border) reach its head, never the generator;
    the generator's output still trains it through the composite."""
    torch.manual_seed(0)
    translator = Translator(ModelConfig(generator_width=8, generator_blocks=1,
                                        attention_from="generator"))
    translated, mask = translator.parts(torch.rand(1, 3, 32, 32) * 2 - 1, "a2b")
    mask.mean().backward()
    assert all(p.grad is None for p in translator.generators.parameters())
    assert all(p.grad is not None for p in translator.attention["a"].parameters())
    translated.mean().backward()
    assert all(p.grad is not None for p in translator.generators["a2b"].parameters())


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


@pytest.mark.parametrize(("kernel", "out_channels", "padding_mode"),
                         [(7, 3, "zeros"), (7, 1, "reflect"), (7, 1, "zeros"), (1, 1, "reflect")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_narrow_conv_equals_plain_conv(kernel: int, out_channels: int, padding_mode: str,
                                       channels_last: bool) -> None:
    """The output layers' transposed-conv form: same values and gradients as ``nn.Conv2d``."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    narrow = NarrowConv2d(8, out_channels, kernel, padding_mode=padding_mode)
    plain = torch.nn.Conv2d(8, out_channels, kernel, padding=kernel // 2,
                            padding_mode=padding_mode)
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


@pytest.mark.parametrize(("kernel", "padding_mode"),
                         [(1, "zeros"), (3, "zeros"), (7, "zeros"), (1, "reflect"),
                          (3, "reflect")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampled_conv_equals_upsample_then_conv(kernel: int, padding_mode: str,
                                                  channels_last: bool) -> None:
    """The attention's upsampling layers as one transposed conv: same values and gradients as
    upsampling, padding (zeros, or reflect as the released code's commented lines) and a
    VALID conv."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    fused = UpsampledConv2d(6, 5, kernel, padding_mode=padding_mode)
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
        mode = "constant" if padding_mode == "zeros" else padding_mode
        padded = torch.nn.functional.pad(upsampled, (kernel // 2,) * 4, mode=mode)
        return torch.nn.functional.conv2d(padded, fused.weight, fused.bias)

    got = run(fused)
    assert got[0].shape == (2, 5, 18, 14) and got[0].is_contiguous(memory_format=layout)
    # The weight gradient sums hundreds of products, in an order that depends on the thread
    # count (one thread measured 1.6e-5 off on a value of 0.08).
    for actual, want in zip(got, run(reference), strict=True):
        torch.testing.assert_close(actual, want, rtol=1e-4, atol=5e-5)
