"""The open_clip vision tower run only up to its hook point (saetui.models.hooks), precision, and the full model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from saetui.device import resolve_device
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.models.hooks import HookPoint

OPEN_CLIP_CONFIG = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# The dtype weights are kept in; tf32 keeps float32 weights and rounds CUDA matmul and convolution inputs to TF32.
PRECISIONS = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def resolve_precision(name: str) -> torch.dtype:
    """fp32|tf32|bf16 -> the weights' dtype; also sets how CUDA computes float32 matmuls and convolutions, process
    wide: TF32 tensor cores for tf32, IEEE float32 otherwise (PyTorch's own default rounds cuDNN convolutions, the
    patch embedding, to TF32 even in float32). CPU arithmetic is never affected."""
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}", f"use {', '.join(PRECISIONS)}")
    mode = "tf32" if name == "tf32" else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    return PRECISIONS[name]


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """The model_cfg of a local open_clip model folder's open_clip_config.json."""
    path = Path(model_dir) / OPEN_CLIP_CONFIG
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "fetch the model first")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}", "fetch the model again") from None
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("vision_cfg"), dict):
        raise DataError(f"{path} has no model_cfg.vision_cfg", "fetch the model again")
    vision = model_cfg["vision_cfg"]
    if "timm_model_name" in vision or not isinstance(vision.get("layers", 12), int):
        raise DataError(f"{path}: only open_clip ViT vision towers are supported", "use a ViT CLIP model")
    return model_cfg


def hook_width(model_dir: Path, site: str = "resid_post") -> int:
    """Width of the activations at a hook site (the embedding size for pooled), from open_clip_config.json."""
    config = read_model_config(model_dir)
    if site == "pooled":
        return int(config.get("embed_dim", 512))
    return int(config["vision_cfg"].get("width", 768))


def config_grid(model_dir: Path) -> tuple[int, int]:
    """The patch grid (rows, cols) of a model from open_clip_config.json: image size // patch size per side."""
    vision = read_model_config(model_dir)["vision_cfg"]
    size, patch = vision.get("image_size", 224), vision.get("patch_size", 16)
    rows, cols = (size, size) if isinstance(size, int) else size
    patch_rows, patch_cols = (patch, patch) if isinstance(patch, int) else patch
    return int(rows) // int(patch_rows), int(cols) // int(patch_cols)


def _weights_path(model_dir: Path) -> Path:
    """The model folder's open_clip weight file (safetensors preferred)."""
    for name in WEIGHT_FILES:
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
    raise NotFoundError(f"{model_dir} holds none of {', '.join(WEIGHT_FILES)}", "fetch the model first")


def _load_tensors(path: Path, prefix: str, keys: set[str]) -> dict[str, torch.Tensor]:
    """The tensors named prefix + key for each key, read from a safetensors or a weights_only torch file."""
    wanted = {prefix + key: key for key in keys}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as handle:
                names = [name for name in handle.keys() if name in wanted]  # noqa: SIM118 (not a dict)
                found = {wanted[name]: handle.get_tensor(name) for name in names}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise DataError(f"{path} is not a state dict", "fetch the model again")
            state = {k.removeprefix("module."): v for k, v in state.items()}
            found = {wanted[name]: value for name, value in state.items() if name in wanted}
    except DataError:
        raise
    except Exception as error:  # safetensors and torch raise many types for a truncated or corrupt file
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cannot read weights {path}: {detail}", "delete the model folder and fetch again") from None
    missing = sorted(keys - found.keys())
    if missing:
        raise DataError(
            f"weights {path} lack {len(missing)} vision tensors (e.g. {prefix}{missing[0]})",
            "fetch the model again",
        )
    return found


def blocks_are_sequence_first(transformer: torch.nn.Module) -> bool:
    """Whether the transformer's blocks take [tokens, batch, width], read from their attention modules.

    The attention layer decides the layout it computes in; a `batch_first` flag on the transformer may be missing
    (older open_clip) or disagree, so the modules themselves are asked, and an unknown block is an error rather
    than a guess (a wrong guess mixes the images of a batch and gives silently wrong activations).
    """
    from open_clip.transformer import CustomResidualAttentionBlock

    layouts: set[bool | None] = set()
    for block in transformer.resblocks:
        flag = getattr(getattr(block, "attn", None), "batch_first", None)  # nn.MultiheadAttention has one
        if isinstance(flag, bool):
            layouts.add(not flag)
        elif isinstance(block, CustomResidualAttentionBlock):
            layouts.add(False)  # open_clip's own attention reads [batch, tokens, width] (the block asserts it)
        else:
            layouts.add(None)
    if None in layouts or len(layouts) != 1:
        raise DataError(
            f"cannot tell the token layout of the vision blocks ({type(transformer.resblocks[0]).__name__})",
            "use open_clip_torch >= 3.0 with a standard ViT",
        )
    return layouts.pop()


class VisionTrunk(torch.nn.Module):
    """open_clip's ViT vision tower run up to a hook point: returns the activations there, every token."""

    def __init__(self, visual: torch.nn.Module, hook: HookPoint, device: torch.device, dtype: torch.dtype) -> None:
        """Wrap a vision tower already truncated to the hook's block (complete for the pooled embedding)."""
        super().__init__()
        self.visual = visual
        self.hook = hook
        self.layer = hook.layer
        grid_h, grid_w = visual.grid_size
        self.grid = (int(grid_h), int(grid_w))
        self.n_tokens = 1 if hook.site == "pooled" else grid_h * grid_w + 1
        self.width = int(visual.output_dim) if hook.site == "pooled" else int(visual.conv1.out_channels)
        self.device = device
        self.dtype = dtype
        self.sequence_first = blocks_are_sequence_first(visual.transformer)
        last = visual.transformer.resblocks[-1]
        if hook.site in ("mlp_out", "attn_out") and not all(
            hasattr(last, name) for name in ("ln_1", "attention", "ls_1", "ln_2", "mlp", "ls_2")
        ):
            raise DataError(
                f"cannot hook {hook.name()}: block {type(last).__name__} is not open_clip's ResidualAttentionBlock",
                "use resid_post with this model",
            )

    @classmethod
    def from_dir(
        cls,
        model_dir: Path,
        layer: int,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        site: str = "resid_post",
        full: bool = False,
    ) -> VisionTrunk:
        """Build the blocks of a local open_clip model folder's vision tower the hook needs and load their weights.

        full=True builds the whole tower (later blocks, ln_post, projection), so `finish` can give the embedding.
        """
        import open_clip

        model_dir = Path(model_dir)
        model_cfg = read_model_config(model_dir)
        vision_cfg = dict(model_cfg["vision_cfg"])
        n_layers = int(vision_cfg.get("layers", 12))
        pooled = site == "pooled"
        full = full or pooled
        layer = n_layers - 1 if pooled else layer
        hook = HookPoint(layer, site)
        if not 0 <= layer < n_layers:
            raise UsageError(
                f"layer {layer} does not exist: the vision tower has blocks 0..{n_layers - 1}",
                f"pick a layer in 0..{n_layers - 1}",
            )
        torch_device = resolve_device(device)
        dtype = resolve_precision(precision)
        if not full:
            vision_cfg["layers"] = layer + 1  # later blocks are never built
        with torch.device("meta"):
            visual = open_clip.model._build_vision_tower(
                embed_dim=int(model_cfg.get("embed_dim", 512)),
                vision_cfg=vision_cfg,
                quick_gelu=bool(model_cfg.get("quick_gelu", False)),
                cast_dtype=dtype if dtype != torch.float32 else None,  # bf16 -> LayerNorm computed in fp32
            )
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise DataError(f"{model_dir}: unsupported vision tower {type(visual).__name__}", "use a ViT CLIP model")
        if not full:
            visual.ln_post = torch.nn.Identity()
            visual.proj = None
        keys = set(visual.state_dict().keys())
        tensors = _load_tensors(_weights_path(model_dir), "visual.", keys)
        try:
            visual.load_state_dict(tensors, strict=True, assign=True)
        except RuntimeError as error:
            detail = str(error).splitlines()[-1].strip()
            raise DataError(
                f"weights do not fit the config in {model_dir}: {detail}", "fetch the model again"
            ) from None
        visual = visual.to(device=torch_device).eval().requires_grad_(False)
        if dtype != torch.float32:
            # open_clip's own bf16 mode: matmul/conv weights in bf16, LayerNorms computed in fp32.
            open_clip.model.convert_weights_to_lp(visual, dtype=dtype)
        return cls(visual, hook, torch_device, dtype)

    @classmethod
    def from_clip(cls, model: torch.nn.Module, layer: int, site: str = "resid_post") -> VisionTrunk:
        """The trunk of a full open_clip CLIP already loaded (its later blocks stay, so `finish` can run them)."""
        n_layers = len(model.visual.transformer.resblocks)
        layer = n_layers - 1 if site == "pooled" else layer
        if not 0 <= layer < n_layers:
            raise UsageError(f"layer {layer} does not exist: blocks 0..{n_layers - 1}", f"pick 0..{n_layers - 1}")
        weight = model.visual.conv1.weight  # the patch embedding's dtype is the tower's compute dtype
        return cls(model.visual, HookPoint(layer, site), weight.device, weight.dtype)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Patch and class embeddings plus positions, after ln_pre, in the blocks' own layout."""
        visual = self.visual
        x = pixels.to(device=self.device, dtype=self.dtype)
        x = visual.conv1(x)  # [B, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, grid*grid, width], patches row-major
        cls_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_token, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x)
        return x.transpose(0, 1) if self.sequence_first else x  # [tokens, B, width] where the blocks expect it

    def _batch_first(self, x: torch.Tensor) -> torch.Tensor:
        """x from the blocks' layout to [B, tokens, width] (and back: the transpose is its own inverse)."""
        return x.transpose(0, 1) if self.sequence_first else x

    def hook_and_residual(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(activations at the hook, residual stream after block `layer`), both [B, tokens, width] in the model's
        dtype; the residual is None for the pooled embedding (nothing follows it)."""
        visual = self.visual
        if self.hook.site == "pooled":
            return visual(pixels.to(device=self.device, dtype=self.dtype))[:, None, :], None
        x = self._embed(pixels)
        blocks = visual.transformer.resblocks
        split = self.hook.site in ("mlp_out", "attn_out")
        for block in blocks[: self.layer if split else self.layer + 1]:
            x = block(x)
        if not split:
            return self._batch_first(x), self._batch_first(x)
        last = blocks[self.layer]
        attn_out = last.ls_1(last.attention(q_x=last.ln_1(x)))
        middle = x + attn_out
        mlp_out = last.ls_2(last.mlp(last.ln_2(middle)))
        hook = attn_out if self.hook.site == "attn_out" else mlp_out
        return self._batch_first(hook), self._batch_first(middle + mlp_out)

    def finish(self, residual: torch.Tensor) -> torch.Tensor:
        """The image embedding [B, embed_dim] from the residual stream after block `layer` [B, tokens, width]: the
        later blocks, the tower's pooling, ln_post and projection (a trunk built by from_clip has them)."""
        visual = self.visual
        x = self._batch_first(residual.to(self.dtype))
        for block in visual.transformer.resblocks[self.layer + 1 :]:
            x = block(x)
        pooled, _ = visual._pool(self._batch_first(x))
        return pooled @ visual.proj if visual.proj is not None else pooled

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Activations at the hook: pixels [B, 3, H, W] -> float32 [B, n_tokens, width]."""
        hook, _ = self.hook_and_residual(pixels)
        return hook.float()


def load_clip(model_dir: Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The full open_clip CLIP (vision and text towers) of a local model folder, in eval mode."""
    import open_clip

    model_dir = Path(model_dir)
    read_model_config(model_dir)
    _weights_path(model_dir)
    torch_device = resolve_device(device)
    try:
        model = open_clip.create_model(f"local-dir:{model_dir}", device=torch_device)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cannot build the CLIP model in {model_dir}: {detail}", "fetch the model again") from None
    return model.eval().requires_grad_(False)
