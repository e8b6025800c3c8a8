"""One training step wired as the method says: which mask reaches which discriminator, which
attention closes the cycle, what trains when. Each test compares against the method computed
independently from the networks, so a mis-routed tensor fails it."""

from __future__ import annotations

import pytest
import torch

from aggan import distributed
from aggan.config import RunConfig
from aggan.losses import hard_mask
from aggan.networks import composite
from aggan.pool import HistoryPool
from aggan.schedule import Phase
from aggan.step import CycleForward, step_modules, training_step
from aggan.train_state import TrainState, build_state
from conftest import with_fields

WARMED_UP = Phase(lr_factor=1, tau=0.0, use_attention=True, train_attention=True,
                  normalize_discriminator=True)


def _switched(tau: float) -> Phase:
    return Phase(lr_factor=1, tau=tau, use_attention=True, train_attention=False,
                 normalize_discriminator=False)


def _state(config: RunConfig) -> TrainState:
    state = build_state(config, torch.device("cpu"))
    with torch.no_grad():  # two attention networks that clearly disagree
        state.translator.attention["b"].layers[-2].bias += 1.5
    return state


def _real() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return {d: torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1 for d in "ab"}


def _step(state: TrainState, config: RunConfig, real: dict[str, torch.Tensor],
          phase: Phase) -> list[tuple[str, torch.Tensor]]:
    """Runs one step; returns (domain, input) of every discriminator call, in order."""
    seen: list[tuple[str, torch.Tensor]] = []
    original = state.discriminators.forward

    def spy(images: torch.Tensor, domain: str, normalize: bool = True) -> torch.Tensor:
        seen.append((domain, images.detach().clone()))
        return original(images, domain, normalize)

    state.discriminators.forward = spy  # type: ignore[method-assign]
    modules = step_modules(state, phase, distributed.Context(), torch.device("cpu"), config)
    training_step(state, modules, real, phase, config.losses)
    del state.discriminators.forward
    return seen


def test_real_images_are_judged_under_their_own_attention(tiny_config: RunConfig) -> None:
    """After the switch D_T sees t * 1[A_T(t) >= tau] (not the source image's mask, not the
    whole image) and the fake under its own mask 1[A_S(s) >= tau]."""
    config = with_fields(tiny_config, pool_size=0)
    state, real = _state(config), _real()
    with torch.no_grad():
        fake_b, mask_a = state.translator(real["a"], "a2b")
        fake_a, mask_b = state.translator(real["b"], "b2a")
    tau = float(mask_b.median())  # half of t's pixels hidden
    seen = _step(state, config, real, _switched(tau))
    judged = dict(seen[-2:])  # the discriminators' update: real and pooled fake in one batch
    expected_b = torch.cat([real["b"] * hard_mask(mask_b, tau), fake_b * hard_mask(mask_a, tau)])
    expected_a = torch.cat([real["a"] * hard_mask(mask_a, tau), fake_a * hard_mask(mask_b, tau)])
    # (then, by default, the source negatives: test_source_negatives_... below)
    torch.testing.assert_close(judged["b"][:2], expected_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(judged["a"][:2], expected_a, rtol=0, atol=1e-6)
    assert (judged["b"][0] == 0).float().mean() > 0.3  # the masking hid something


def test_pooled_fakes_are_judged_under_the_mask_they_were_made_with(
        tiny_config: RunConfig) -> None:
    state, real = _state(tiny_config), _real()
    stored_image = torch.full((1, 3, 32, 32), 0.7)
    stored_mask = torch.zeros(1, 1, 32, 32)
    stored_mask[..., :16] = 1  # left half attended
    seed = next(s for s in range(100)  # a pool whose next draw hands out the stored fake
                if torch.rand((), generator=torch.Generator().manual_seed(s)) < 0.5)
    state.pools["a2b"] = HistoryPool(1, seed=0)
    state.pools["a2b"].query(stored_image, stored_mask)
    state.pools["a2b"].generator.manual_seed(seed)
    seen = _step(state, tiny_config, real, _switched(0.5))
    judged = dict(seen[-2:])
    torch.testing.assert_close(judged["b"][1:2], stored_image * stored_mask)


def test_reconstruction_uses_the_attention_of_the_translated_image(
        tiny_config: RunConfig) -> None:
    """s'' = A_T(s') * F_T->S(s') + (1 - A_T(s')) * s'."""
    translator = _state(tiny_config).translator
    real = _real()
    with torch.no_grad():
        fake, mask, cycled, _ = CycleForward(translator)(real["a"], real["b"], True)
        attention, generators = translator.attention, translator.generators
        for direction, source, target in (("a2b", "a", "b"), ("b2a", "b", "a")):
            source_mask = attention[source](real[source])
            translated = composite(source_mask, generators[direction](real[source]),
                                   real[source])
            back = "b2a" if direction == "a2b" else "a2b"
            expected = composite(attention[target](translated), generators[back](translated),
                                 translated)
            torch.testing.assert_close(mask[direction], source_mask, rtol=0, atol=1e-6)
            torch.testing.assert_close(fake[direction], translated, rtol=0, atol=1e-6)
            torch.testing.assert_close(cycled[direction], expected, rtol=0, atol=1e-6)


def test_warm_up_cycle_uses_no_attention(tiny_config: RunConfig) -> None:
    """During the warm-up both translations and both reconstructions are the generators' alone
    (mask 1): s'' = F_T->S(F_S->T(s))."""
    translator = _state(tiny_config).translator
    real = _real()
    with torch.no_grad():
        fake, mask, cycled, _ = CycleForward(translator)(real["a"], real["b"], False)
        generators = translator.generators
        for direction, source, back in (("a2b", "a", "b2a"), ("b2a", "b", "a2b")):
            translated = generators[direction](real[source])
            assert mask[direction].eq(1).all()
            torch.testing.assert_close(fake[direction], translated, rtol=0, atol=1e-6)
            torch.testing.assert_close(cycled[direction], generators[back](translated), rtol=0,
                                       atol=1e-6)


def _attention_weights(state: TrainState) -> list[torch.Tensor]:
    """The conv kernels of both attention networks."""
    return [p.detach().clone() for p in state.translator.attention.parameters() if p.dim() == 4]


@pytest.mark.parametrize(("phase", "trains"), [(WARMED_UP, True), (_switched(0.1), False)],
                         ids=["before-switch", "after-switch"])
def test_attention_trains_with_the_generators_until_the_switch(
        tiny_config: RunConfig, phase: Phase, trains: bool) -> None:
    state = _state(tiny_config)
    before = _attention_weights(state)
    _step(state, tiny_config, _real(), phase)
    changed = [not torch.equal(b, a) for b, a in zip(before, _attention_weights(state),
                                                      strict=True)]
    assert all(changed) if trains else not any(changed)


def _cycle_gradients(translator: torch.nn.Module, cycle_gradient: float,
                     real: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
    """The cycle loss's gradients on the attention and on the generators, and the outputs."""
    translator.zero_grad()
    outputs = CycleForward(translator, cycle_gradient)(real["a"], real["b"], True)
    sum(torch.mean(torch.abs(outputs.cycled[d] - real[d[0]])) for d in outputs.cycled).backward()
    attention = [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                 for p in translator.attention.parameters()]
    generators = [p.grad.clone() for p in translator.generators.parameters()]
    values = [t.detach() for part in outputs for t in part.values()]
    return attention, generators, values


@pytest.mark.parametrize("cycle_gradient", [0.0, 0.25])
def test_cycle_gradient_scales_what_the_cycle_teaches_the_attention(
        tiny_config: RunConfig, cycle_gradient: float) -> None:
    """``losses.attention_cycle_gradient``: the cycle loss's gradient on the attention networks is
    scaled by it; the generators still learn from it, and every value computed stays as
    released (1)."""
    translator = _state(tiny_config).translator
    real = _real()
    released = _cycle_gradients(translator, 1.0, real)
    scaled = _cycle_gradients(translator, cycle_gradient, real)
    full = torch.cat([g.flatten() for g in released[0]]).norm()
    part = torch.cat([g.flatten() for g in scaled[0]]).norm()
    assert full > 0
    if cycle_gradient == 0:
        assert part == 0
    else:  # every path from the cycle loss into the attention passes a scaled mask
        assert cycle_gradient**2 * full < part < cycle_gradient * full * 1.01
    assert sum(float(g.abs().sum()) for g in scaled[1]) > 0
    for full, part in zip(released[2], scaled[2], strict=True):
        assert torch.equal(full, part)
    step_config = with_fields(tiny_config, attention_cycle_gradient=cycle_gradient)
    modules = step_modules(_state(tiny_config), WARMED_UP, distributed.Context(),
                           torch.device("cpu"), step_config)
    assert modules.cycle.cycle_gradient == cycle_gradient


def test_source_negatives_are_judged_as_fakes_under_their_masks(tiny_config: RunConfig) -> None:
    """With ``losses.source_negative_weight`` D_T's batch ends with the real source image under
    the mask it is translated with, s * 1[A_S(s) >= tau], and D_T's loss rates it as fake."""
    config = with_fields(tiny_config, pool_size=0, source_negative_weight=0.5)
    state, real = _state(config), _real()
    with torch.no_grad():
        _, mask_a = state.translator(real["a"], "a2b")
        _, mask_b = state.translator(real["b"], "b2a")
    tau = float(mask_a.median())
    seen = _step(state, config, real, _switched(tau))
    judged = dict(seen[-2:])
    assert judged["b"].shape[0] == 3 and judged["a"].shape[0] == 3
    torch.testing.assert_close(judged["b"][2:], real["a"] * hard_mask(mask_a, tau), rtol=0,
                               atol=1e-6)
    torch.testing.assert_close(judged["a"][2:], real["b"] * hard_mask(mask_b, tau), rtol=0,
                               atol=1e-6)
    assert (judged["b"][2] == 0).float().mean() > 0.3  # the source's own mask hid something


def test_a_step_computes_the_priors_and_source_negatives_it_is_given(
        tiny_config: RunConfig) -> None:
    """The step hands the area floor its minimum and the discriminators their source negatives:
    their terms come out with the values computed from the step's own masks and scores."""
    config = with_fields(tiny_config, mask_area_min=0.99, mask_area_weight=1.0,
                         source_negative_weight=1.0, pool_size=0)
    state, real = _state(config), _real()
    with torch.no_grad():
        _, mask_a = state.translator(real["a"], "a2b")
        source_scores = state.discriminators(real["a"] * hard_mask(mask_a, 0.0), "b")
    modules = step_modules(state, WARMED_UP, distributed.Context(), torch.device("cpu"), config)
    terms = training_step(state, modules, real, WARMED_UP, config.losses)
    torch.testing.assert_close(terms["loss/mask_area_a"], 0.99 - mask_a.mean(), rtol=1e-5,
                               atol=1e-6)
    # D_b's source negative: the horse scored as a fake zebra, before D's update.
    torch.testing.assert_close(terms["loss/source_negative_b"],
                               0.5 * torch.mean(source_scores ** 2), rtol=1e-4, atol=1e-6)


def test_a_mask_fixed_at_one_gets_no_priors(tiny_config: RunConfig) -> None:
    """In the warm-up (and the cyclegan variant) the area floor and the border prior are
    constants of a mask that is not learned: they are neither losses nor logged."""
    warm_up = Phase(lr_factor=1, tau=0.0, use_attention=False, train_attention=False,
                    normalize_discriminator=True)
    for phase, expected in ((warm_up, False), (WARMED_UP, True)):
        state = _state(tiny_config)
        modules = step_modules(state, phase, distributed.Context(), torch.device("cpu"),
                               tiny_config)
        terms = training_step(state, modules, _real(), phase, tiny_config.losses)
        assert ("loss/mask_area_a" in terms) is expected
        assert ("loss/mask_border_b" in terms) is expected


def test_attention_cycle_compares_each_mask_with_the_other_attention_on_its_translation(
        tiny_config: RunConfig) -> None:
    """``losses.attention_cycle_weight``: the term of domain a is mean |A_B(s') - A_A(s)|, with
    s' the step's own translation of s; it trains both attention networks, and it is off
    while the attention does not train (warm-up, after the switch)."""
    config = with_fields(tiny_config, attention_cycle_weight=2.0, cycle_weight=1.0,
                         mask_area_weight=0.0, mask_border_weight=0.0)
    state, real = _state(config), _real()
    with torch.no_grad():
        fake_a, mask_a = state.translator(real["a"], "a2b")
        _, on_fake_a = state.translator(fake_a, "b2a")
        fake_b, mask_b = state.translator(real["b"], "b2a")
        _, on_fake_b = state.translator(fake_b, "a2b")
    modules = step_modules(state, WARMED_UP, distributed.Context(), torch.device("cpu"), config)
    terms = training_step(state, modules, real, WARMED_UP, config.losses)
    expected = {"a": (on_fake_a - mask_a).abs().mean(), "b": (on_fake_b - mask_b).abs().mean()}
    # The two attentions disagree (_state), so a term of the wrong pair would differ.
    assert abs(float(expected["a"] - (on_fake_b - mask_a).abs().mean())) > 1e-3
    for domain in "ab":
        torch.testing.assert_close(terms[f"loss/attention_cycle_{domain}"], expected[domain],
                                   rtol=1e-5, atol=1e-6)

    # Its gradient reaches both attention networks (through A_A(s) and through A_B(s')).
    translator = _state(tiny_config).translator
    outputs = CycleForward(translator)(real["a"], real["b"], True)
    (outputs.cycle_mask["a2b"] - outputs.mask["a2b"]).abs().mean().backward()
    for domain in "ab":
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in translator.attention[domain].parameters())

    for phase in (_switched(0.1), Phase(lr_factor=1, tau=0.0, use_attention=False,
                                        train_attention=False, normalize_discriminator=True)):
        modules = step_modules(_state(tiny_config), phase, distributed.Context(),
                               torch.device("cpu"), config)
        assert "loss/attention_cycle_a" not in training_step(state, modules, real, phase,
                                                             config.losses)


def test_the_weights_average_follows_each_generator_update(tiny_config: RunConfig) -> None:
    """``train.translator_ema`` = beta: the first update copies the weights, each later one
    makes the average beta * average + (1 - beta) * weights; the discriminators have none."""
    config = with_fields(tiny_config, translator_ema=0.75)
    state = _state(config)
    real = _real()
    modules = step_modules(state, WARMED_UP, distributed.Context(), torch.device("cpu"), config)
    training_step(state, modules, real, WARMED_UP, config.losses)
    first = {k: v.clone() for k, v in state.translator.state_dict().items()}
    assert all(torch.equal(state.inference_translator.state_dict()[k], v)
               for k, v in first.items())
    training_step(state, modules, real, WARMED_UP, config.losses)
    for key, weights in state.translator.state_dict().items():
        if weights.is_floating_point():
            torch.testing.assert_close(state.inference_translator.state_dict()[key],
                                       0.75 * first[key] + 0.25 * weights)
    assert state.inference_translator is not state.translator
    plain = _state(tiny_config)
    assert plain.translator_ema is None and plain.inference_translator is plain.translator
