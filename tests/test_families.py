"""Each family's loader + saetui's sparse encoder against a dense reference written from that family's definition.

Same active sets, values and reconstructions within float32 tolerance. Tolerance: the reference and saetui do the
same float32 products in a different order (dense matmul vs chunked blocks, embedding_bag vs dense decode); with
d_in = 32 inputs of magnitude <= ~10 and unit-scale weights, pre-activations are O(10) and an order change moves
them by a few ulps of that (~1e-5); 1e-4 absolute leaves a margin and is far below any value that matters.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from harness.families import (
    EXPANSION,
    SAEV_LEGACY_HEADER,
    SAEV_SCHEMA5_HEADER,
    WIDTH,
    dl_files,
    prisma_config,
    prisma_repo_files,
    sae_tensors,
    saev_file,
)
from harness.family_reference import dense_codes, dictionary_learning_forward, prisma_forward, saev_forward
from harness.tiny import write_files
from saetui.errors import DataError, UsageError
from saetui.families import dictionary_learning, generic, prisma, saev
from saetui.families.normalisers import Normaliser
from saetui.families.sparse import reconstruction_error

ATOL = 1e-4
N = WIDTH * EXPANSION


def _activations(seed: int = 0, tokens: int = 300) -> torch.Tensor:
    """Residual-stream-like activations: a shared offset, per-token scale and noise."""
    gen = torch.Generator().manual_seed(seed)
    offset = 0.5 * torch.randn(WIDTH, generator=gen)
    scale = 0.5 + 3 * torch.rand(tokens, 1, generator=gen)
    return (offset + scale * torch.randn(tokens, WIDTH, generator=gen)).contiguous()


def _assert_same(sae, x: torch.Tensor, f_ref: torch.Tensor, recon_ref: torch.Tensor) -> None:
    """Identical active sets, values within ATOL, and the same reconstruction error."""
    values, features = sae.encode(x)
    dense = dense_codes(values, features, f_ref.shape[1])
    assert torch.equal(dense != 0, f_ref != 0), "active sets differ"
    assert torch.allclose(dense, f_ref, atol=ATOL, rtol=0)
    recon = sae.reconstruct(x, values, features)
    assert torch.allclose(recon, recon_ref, atol=ATOL * 10, rtol=1e-5)  # one more sum of k products
    sse, _ = reconstruction_error(x, recon)
    sse_ref, _ = reconstruction_error(x, recon_ref)
    assert torch.allclose(sse, sse_ref, rtol=1e-4, atol=1e-4)
    assert (f_ref != 0).sum(dim=1).max() > 0


@pytest.mark.parametrize(
    ("normalise", "activation"),
    [("layer_norm", "relu"), ("constant_norm_rescale", "topk"), ("none", "relu"), ("layer_norm", "topk")],
)
def test_prisma_matches_its_reference(tmp_path: Path, normalise: str, activation: str) -> None:
    """ViT-Prisma: config-driven normalisation and ReLU / TopK-then-ReLU, as vit_prisma computes them."""
    config = prisma_config(11, "resid_post", normalise, activation, k=8)
    root = write_files(tmp_path, prisma_repo_files(config, seed=7))
    weights = prisma.load(root / "n_images_2600058.pt", root / "config.json")
    x = _activations(1)
    f_ref, recon_ref = prisma_forward(x, sae_tensors(N, 7), config)
    _assert_same(weights.sparse(feature_block=100, token_chunk=64), x, f_ref, recon_ref)
    if activation == "relu":  # ReLU SAEs store far more than 32 latents per token
        assert (f_ref != 0).sum(dim=1).float().mean() > 32


def test_prisma_describe_reads_model_hook_and_tokens() -> None:
    """The config names the model (open-clip: -> hf-hub:), hook point and token set."""
    config = prisma_config(9, "mlp_out", "none", use_patches_only=True)
    fields = prisma.describe(config, Path("config.json"))
    assert fields["model"] == "hf-hub:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"
    assert (fields["layer"], fields["hook"], fields["tokens"], fields["k"]) == (9, "mlp_out", "patches", None)


def test_prisma_refuses_unsupported_architectures(tmp_path: Path) -> None:
    """Gated SAEs and transcoders are refused in one line, not read with the wrong forward."""
    for extra, match in (({"architecture": "gated"}, "architecture 'gated'"), ({"is_transcoder": True}, "transcoder")):
        root = write_files(tmp_path / match[:5], prisma_repo_files(prisma_config(1, "resid_post", "none", **extra), 1))
        with pytest.raises(DataError, match=match):
            prisma.load(root / "n_images_2600058.pt", root / "config.json")


def test_saev_legacy_header_is_release_era_relu_with_scaling(tmp_path: Path) -> None:
    """A legacy header: ReLU((x' - b_dec) W_enc + b_enc) on x' = (x - mu) / s; the loader asks for mu and s."""
    path = tmp_path / "sae.pt"
    path.write_bytes(saev_file(SAEV_LEGACY_HEADER, seed=3))
    weights = saev.load(path)
    assert weights.needs_scaling and weights.activation.kind == "threshold"
    x = _activations(2)
    mu, s = x.mean(dim=0), float((x - x.mean(dim=0)).norm(dim=1).mean()) / WIDTH**0.5
    f_ref, recon_scaled = saev_forward((x - mu) / s, sae_tensors(N, 3), release_era=True, activation="Relu")
    sae = weights.sparse(normaliser=Normaliser("affine", mu, s))
    _assert_same(sae, x, f_ref, recon_scaled * s + mu)


def test_saev_schema5_topk_keeps_raw_values(tmp_path: Path) -> None:
    """Schema 5 TopK: act(x W_enc + b_enc) with the raw top-k values (no ReLU, no b_dec subtracted)."""
    path = tmp_path / "sae.pt"
    path.write_bytes(saev_file(SAEV_SCHEMA5_HEADER, seed=4))
    weights = saev.load(path)
    assert not weights.needs_scaling and weights.activation.k == 16 and not weights.activation.relu
    x = _activations(3)
    f_ref, recon_ref = saev_forward(x, sae_tensors(N, 4), release_era=False, activation="TopK", k=16)
    _assert_same(weights.sparse(), x, f_ref, recon_ref)
    shifted = {**sae_tensors(N, 4), "b_enc": sae_tensors(N, 4)["b_enc"] - 5.0}  # every pre-activation < 0
    buffer = io.BytesIO()
    torch.save(shifted, buffer)
    path.write_bytes((json.dumps(SAEV_SCHEMA5_HEADER) + "\n").encode() + buffer.getvalue())
    small = 0.1 * x[:20]
    f_neg, recon_neg = saev_forward(small, shifted, release_era=False, activation="TopK", k=16)
    assert bool((f_neg.sum(dim=1) < 0).all())
    _assert_same(saev.load(path).sparse(), small, f_neg, recon_neg)


def test_saev_batchtopk_threshold(tmp_path: Path) -> None:
    """BatchTopK with a threshold buffer keeps the values above it."""
    header = {**SAEV_SCHEMA5_HEADER, "cfg": {"activation": {"cls": "BatchTopK", "params": {"top_k": 16}}}}
    path = tmp_path / "sae.pt"
    path.write_bytes(saev_file(header, seed=5, threshold=0.4))
    x = _activations(4)
    f_ref, recon_ref = saev_forward(x, sae_tensors(N, 5), False, "BatchTopK", 16, threshold=0.4)
    _assert_same(saev.load(path).sparse(), x, f_ref, recon_ref)


def test_saev_header_is_json_and_garbage_is_refused(tmp_path: Path) -> None:
    """A file without a JSON first line is a one-line DataError (nothing is evaluated)."""
    path = tmp_path / "sae.pt"
    path.write_bytes(b"{not json\n" + b"\0" * 10)
    with pytest.raises(DataError, match="header line is not JSON"):
        saev.load(path)


@pytest.mark.parametrize(("layout", "kind"), [("matryoshka", "threshold"), ("topk", "topk")])
def test_dictionary_learning_matches_its_reference(tmp_path: Path, layout: str, kind: str) -> None:
    """Matryoshka (W_enc layout, threshold 0.15) and AutoEncoderTopK (encoder.weight layout, k 20)."""
    root = write_files(tmp_path, dl_files(layout, seed=6))
    weights = dictionary_learning.load(root / "ae.pt", root / "config.json")
    x = _activations(5)
    f_ref, recon_ref = dictionary_learning_forward(x, sae_tensors(N, 6), kind, k=20, threshold=0.15)
    _assert_same(weights.sparse(feature_block=64), x, f_ref, recon_ref)


def test_generic_state_dict_from_the_config(tmp_path: Path) -> None:
    """A state dict with its own key names and transposed matrices, described by a keys table."""
    t = sae_tensors(N, 8)
    path = tmp_path / "sae.pth"
    buffer = io.BytesIO()
    torch.save(
        {"state": {"encoder.weight": t["W_enc"].T.contiguous(), "encoder.bias": t["b_enc"],
                   "decoder.weight": t["W_dec"].T.contiguous(), "decoder.bias": t["b_dec"]}},
        buffer,
    )  # fmt: skip
    path.write_bytes(buffer.getvalue())
    keys = {
        "inside": "state", "enc": "encoder.weight", "transpose_enc": True, "b_enc": "encoder.bias",
        "dec": "decoder.weight", "transpose_dec": True, "b_dec": "decoder.bias", "activation": "relu",
    }  # fmt: skip
    weights = generic.load(path, keys)
    x = _activations(6)
    h = torch.relu(x @ t["W_enc"] + t["b_enc"])  # no input bias named: none subtracted
    _assert_same(weights.sparse(), x, h, h @ t["W_dec"] + t["b_dec"])
    with pytest.raises(UsageError, match="unknown keys"):
        generic.load(path, {**keys, "encoder": "x"})


def test_keep_top_drops_the_smallest_pairs_into_the_error(tmp_path: Path) -> None:
    """--keep-top N keeps each token's N largest values; the dropped part shows up in the reconstruction error."""
    root = write_files(tmp_path, prisma_repo_files(prisma_config(11, "resid_post", "none"), seed=9))
    weights = prisma.load(root / "n_images_2600058.pt", root / "config.json")
    x = _activations(7)
    every = weights.sparse()
    top5 = weights.sparse(keep_top=5)
    v_all, f_all = every.encode(x)
    v5, f5 = top5.encode(x)
    assert v5.shape[1] == 5 and torch.equal(v5, v_all[:, :5]) and torch.equal(f5, f_all[:, :5])
    dropped = dense_codes(v_all[:, 5:], f_all[:, 5:], N) @ sae_tensors(N, 9)["W_dec"]
    recon5 = top5.reconstruct(x, v5, f5)
    assert torch.allclose(every.reconstruct(x, v_all, f_all) - recon5, dropped, atol=ATOL * 10)
    sse5, _ = reconstruction_error(x, recon5)
    assert torch.allclose(sse5, (x - recon5).pow(2).sum(dim=1))  # the error stored is that of the kept pairs


def test_saev_header_schemas_are_json_only(tmp_path: Path) -> None:
    """Schema-1 variant A names the activation in `cls`; it reads as the release-era TopK."""
    header = {"schema": 1, "cls": "TopK", "cfg": {"d_vit": WIDTH, "exp_factor": EXPANSION, "top_k": 12}}
    path = tmp_path / "sae.pt"
    path.write_bytes(saev_file(header, seed=10))
    weights = saev.load(path)
    assert weights.activation.k == 12 and weights.input_bias is not None
    assert json.loads(path.read_bytes().split(b"\n", 1)[0]) == header
