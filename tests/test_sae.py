"""SparseSae against the dense clipscope reference: same indices, values and reconstructions, chunked."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from harness.reference import dense_reference_encode
from harness.tiny import TINY_WIDTH, tiny_sae_bytes, tiny_sae_tensors
from saetui.families.clip_scope import load_checkpoint
from saetui.families.sparse import SparseSae, reconstruction_error, standardise_batch
from saetui.families.weights import SaeWeights


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> SaeWeights:
    """The default tiny CLIP-Scope SAE (32 -> 512, k 32), loaded from disk."""
    path = tmp_path_factory.mktemp("sae") / "1200013184.pt"
    path.write_bytes(tiny_sae_bytes())
    return load_checkpoint(path)


def _tokens(n: int, d: int, seed: int) -> torch.Tensor:
    """Residual-stream-like tokens: a shared offset plus per-token spread."""
    gen = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(d, generator=gen) + 1.5 * torch.randn(n, d, generator=gen)


UNIT_ROUNDOFF = 2.0**-24  # float32: every rounding has relative error at most u


def _float32_bounds(ckpt: SaeWeights, x: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far two float32 evaluations of the codes (and reconstructions) may differ, per element.

    A float32 sum of n products differs from the exact one by at most n * u * sum |products| (Higham's gamma_n
    bound, n u << 1); two evaluations that split or order the sums differently (chunked vs dense) may each be off
    that much, so they differ by at most twice the bound. Values: n = d_in products of (x - pre_b) (one more rounding)
    with enc columns. Reconstructions: k products value x dec row plus pre_b, and the value differences carried
    through |dec|. The bound scales with the magnitudes: reconstructions of size ~20 allow ~1e-5, not a fixed 1e-5.
    """
    u = UNIT_ROUNDOFF
    centred = (x.double() - ckpt.input_bias.double()).abs()
    enc, dec = ckpt.enc.double().abs(), ckpt.dec.double().abs()
    scale = torch.gather(centred @ enc, 1, indices)  # sum over dims of |x - pre_b| |enc| per kept pair
    value_bound = 2 * (ckpt.d_in + 2) * u * scale
    kept_values = torch.gather(centred @ ckpt.enc.double(), 1, indices).abs()
    terms = torch.einsum("tk,tkd->td", kept_values, dec[indices]) + ckpt.input_bias.double().abs()
    carried = torch.einsum("tk,tkd->td", value_bound, dec[indices])
    recon_bound = 2 * (ckpt.k + 2) * u * terms + carried
    return value_bound.float(), recon_bound.float()


def _assert_matches_reference(sae: SparseSae, ckpt: SaeWeights, x: torch.Tensor) -> torch.Tensor:
    """Indices identical, values and reconstructions within float32 rounding of the dense reference."""
    values, indices = sae.encode(x)
    ref_values, ref_indices, ref_recon = dense_reference_encode(ckpt, x)
    assert values.dtype == torch.float32 and indices.dtype == torch.int64
    assert values.shape == indices.shape == (x.shape[0], ckpt.k)
    assert torch.equal(indices, ref_indices)
    value_bound, recon_bound = _float32_bounds(ckpt, x, indices)
    assert bool(((values - ref_values).abs() <= value_bound).all())
    assert bool(((sae.decode(values, indices) - ref_recon).abs() <= recon_bound).all())
    assert bool((values[:, :-1] >= values[:, 1:]).all()), "kept values must come in descending order"
    return values


@pytest.mark.parametrize(("feature_block", "token_chunk"), [(100, 7), (33, 1000), (512, 64), (8192, 2048)])
def test_encode_decode_match_dense_reference(feature_block: int, token_chunk: int, ckpt: SaeWeights) -> None:
    """Any block/chunk split (including blocks that do not divide 512) gives the reference's numbers."""
    sae = ckpt.sparse("cpu", feature_block=feature_block, token_chunk=token_chunk)
    assert (sae.k, sae.d_in, sae.n_features) == (32, TINY_WIDTH, 512)
    values = _assert_matches_reference(sae, ckpt, _tokens(300, TINY_WIDTH, seed=1))
    # No ReLU: some rows keep negative values, some keep nothing but negative values.
    negative_rows = (values < 0).any(dim=1)
    assert 0 < int(negative_rows.sum()) < values.shape[0]
    assert bool((values < 0).all(dim=1).any())


def test_encode_runs_in_bounded_chunks(ckpt: SaeWeights, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every dense piece is at most token_chunk x feature_block, however many tokens come in."""
    sae = ckpt.sparse("cpu", feature_block=160, token_chunk=50)
    shapes: list[tuple[int, ...]] = []
    original = torch.topk

    def recording_topk(tensor: torch.Tensor, *args, **kwargs):
        """torch.topk that records the shape of every dense piece it is given."""
        shapes.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch, "topk", recording_topk)
    sae.encode(_tokens(1001, TINY_WIDTH, seed=2))
    # Feature blocks 160, 160, 160, 32 per chunk of <= 50 tokens, then one top-k over 4 x 32 candidates.
    assert shapes and max(s[0] for s in shapes) <= 50 and max(s[1] for s in shapes) <= 160
    assert [sum(s[0] for s in shapes if s[1] == width) for width in (160, 32, 128)] == [3 * 1001, 1001, 1001]


def test_standardise_reproduces_training_space(ckpt: SaeWeights) -> None:
    """standardise=True encodes the per-dimension z-scores of the batch; decode is then in that space."""
    sae = ckpt.sparse("cpu", feature_block=100)
    x = _tokens(257 * 2, TINY_WIDTH, seed=3) * torch.linspace(0.1, 10, TINY_WIDTH) + 7
    x[:, 5] = 3.0  # a dimension with no spread maps to 0 rather than NaN
    z = standardise_batch(x)
    assert torch.allclose(z.mean(dim=0), torch.zeros(TINY_WIDTH), atol=1e-5)
    spread = z.std(dim=0, correction=0)
    assert torch.allclose(spread[torch.arange(TINY_WIDTH) != 5], torch.ones(TINY_WIDTH - 1), atol=1e-5)
    assert bool((z[:, 5] == 0).all())
    values, indices = sae.encode(x, standardise=True)
    ref_values, ref_indices, ref_recon = dense_reference_encode(ckpt, z)
    assert torch.equal(indices, ref_indices)
    value_bound, recon_bound = _float32_bounds(ckpt, z, indices)
    assert bool(((values - ref_values).abs() <= value_bound).all())
    assert bool(((sae.decode(values, indices) - ref_recon).abs() <= recon_bound).all())
    assert not torch.equal(indices, sae.encode(x)[1])


def test_reconstruction_error(ckpt: SaeWeights) -> None:
    """sse and total_ss follow CLIP-Scope's definitions token by token."""
    sae = ckpt.sparse("cpu")
    x = _tokens(40, TINY_WIDTH, seed=4)
    recon = sae.decode(*sae.encode(x))
    sse, total_ss = reconstruction_error(x, recon)
    assert sse.shape == total_ss.shape == (40,)
    for t in (0, 17, 39):
        assert sse[t].item() == pytest.approx(float(((x[t] - recon[t]) ** 2).sum()), rel=1e-5)
        assert total_ss[t].item() == pytest.approx(float(((x[t] - x[t].mean()) ** 2).sum()), rel=1e-5)
    assert bool((sse >= 0).all()) and bool((sse > 0).any())


def test_bf16_sae_returns_float32(ckpt: SaeWeights) -> None:
    """A bf16 SAE still hands back float32 values and int64 indices that mostly agree with fp32."""
    sae = ckpt.sparse("cpu", dtype=torch.bfloat16)
    x = _tokens(64, TINY_WIDTH, seed=5)
    values, indices = sae.encode(x)
    assert values.dtype == torch.float32 and indices.dtype == torch.int64
    assert sae.decode(values, indices).dtype == torch.float32
    _, ref_indices, _ = dense_reference_encode(ckpt, x)
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(indices, ref_indices, strict=True))
    assert overlap / ref_indices.numel() > 0.8


def test_rejects_wrong_width(ckpt: SaeWeights) -> None:
    """Activations of another width are a programming error, caught before any matmul."""
    sae = ckpt.sparse("cpu")
    with pytest.raises(ValueError, match="expected activations"):
        sae.encode(torch.zeros(3, TINY_WIDTH + 1))


@pytest.mark.slow
def test_real_shapes_match_dense_reference(tmp_path: Path) -> None:
    """1024 -> 65,536, k 32 in the CLIP-Scope file format: loaded and encoded like the dense reference."""
    pre_b, enc, dec = tiny_sae_tensors(d_in=1024, n_features=65536, seed=7)
    path = tmp_path / "1200013184.pt"
    torch.save(
        {
            "model_state_dict": OrderedDict([("pre_b", pre_b), ("enc", enc), ("dec", dec)]),
            "d_in": 1024,
            "n_features": 65536,
            "k": 32,
            "token_count": 1200013184,
            "n_iter": 1200013184,
            "dead_latents": torch.zeros(65536),
            "log_id": "20_resid-425b3aff",
        },
        path,
    )
    del pre_b, enc, dec
    ckpt = load_checkpoint(path)
    assert (ckpt.d_in, ckpt.n_features, ckpt.k) == (1024, 65536, 32)
    sae = ckpt.sparse("cpu")
    values = _assert_matches_reference(sae, ckpt, _tokens(64, 1024, seed=8))
    assert bool((values < 0).any())


def test_tiny_sae_bytes_are_deterministic() -> None:
    """Equal arguments give equal bytes; another seed gives another SAE."""
    assert tiny_sae_bytes(seed=3) == tiny_sae_bytes(seed=3)
    a = torch.load(io.BytesIO(tiny_sae_bytes(seed=3)), weights_only=True)["model_state_dict"]["enc"]
    b = torch.load(io.BytesIO(tiny_sae_bytes(seed=4)), weights_only=True)["model_state_dict"]["enc"]
    assert not torch.equal(a, b)
