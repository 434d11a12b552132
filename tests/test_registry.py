"""The SAE registry: the eight built-in CLIP-Scope SAEs and user entries from the TOML config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from saetui.errors import ExitCode, UsageError
from saetui.registry import BUILTIN_SPECS, SaeSpec, all_specs, config_path, get_spec, user_specs

LAYERS = (2, 5, 8, 11, 14, 17, 20, 22)
TINY_MODEL = "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An (empty, not yet written) user config file that $SAETUI_CONFIG points at."""
    path = tmp_path / "config.toml"
    monkeypatch.setenv("SAETUI_CONFIG", str(path))
    return path


def test_builtins_are_the_eight_clip_scope_saes(config: Path) -> None:
    """layer2..layer22 on lewington/CLIP-ViT-L-scope: <L>_resid folders, the laion ViT-L/14, release sizes; then
    the other families' released SAEs and the demo's SAE, which `saetui demo` publishes into the cache."""
    scope = [spec for spec in BUILTIN_SPECS if spec.family == "clip-scope"]
    assert [spec.name for spec in scope] == [f"layer{layer}" for layer in LAYERS]
    assert {spec.family for spec in BUILTIN_SPECS} == {"clip-scope", "vit-prisma", "saev"}
    assert all_specs()[-1].published_by == "saetui demo" and all_specs()[-1].name == "demo-random-weights"
    for spec in BUILTIN_SPECS:
        if spec.family == "vit-prisma":
            assert (
                spec.model == "hf-hub:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K" and spec.config_file == "config.json"
            )
    for spec, layer in zip(scope, LAYERS, strict=True):
        assert spec.repo_id == "lewington/CLIP-ViT-L-scope"
        assert spec.folder == f"{layer}_resid" and spec.file is None
        assert spec.layer == layer
        assert spec.model == "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
        assert spec.model_repo == "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
        assert spec.pretrained == "laion2b_s32b_b82k"
        assert (spec.d_in, spec.n_features, spec.k, spec.revision) == (1024, 65536, 32, "main")
        assert spec.checkpoint_file(1200013184) == f"{layer}_resid/1200013184.pt"


def test_unknown_name_is_a_usage_error_listing_valid_names(config: Path) -> None:
    """get_spec of an unknown name raises UsageError (exit 2) naming every valid SAE and the config file."""
    with pytest.raises(UsageError) as caught:
        get_spec("layer21")
    assert caught.value.exit_code == ExitCode.USAGE
    text = caught.value.one_line()
    assert "layer21" in text and str(config) in text
    assert "layer2, layer5, layer8, layer11, layer14, layer17, layer20, layer22" in text


def test_user_entries_follow_the_builtins(config: Path) -> None:
    """[sae.<name>] tables become SaeSpecs with defaults for optional keys; folder and file entries work."""
    config.write_text(
        f"""
[sae.mine]
repo = "me/my-sae"
file = "ckpt/sae.pt"
model = "{TINY_MODEL}"
layer = 5
k = 16
n_features = 4096
d_in = 768
revision = "v1"
pretrained = "custom"

[sae.series]
repo = "me/series"
folder = "resid_9/"
model = "hf-hub:org/other-clip"
layer = 9
""",
        encoding="utf-8",
    )
    specs = all_specs()
    assert [spec.name for spec in specs[-2:]] == ["mine", "series"]
    assert get_spec("mine") == SaeSpec(
        name="mine",
        repo_id="me/my-sae",
        file="ckpt/sae.pt",
        model=TINY_MODEL,
        layer=5,
        k=16,
        n_features=4096,
        d_in=768,
        revision="v1",
        pretrained="custom",
        source=str(config),
    )
    series = get_spec("series")
    assert series.folder == "resid_9" and series.file is None
    assert (series.d_in, series.n_features, series.k, series.revision) == (1024, 65536, 32, "main")
    assert series.model_repo == "org/other-clip"
    assert series.checkpoint_file(5) == "resid_9/5.pt"
    with pytest.raises(UsageError):
        get_spec("mine").checkpoint_file(5)


def test_user_entry_may_not_shadow_a_builtin(config: Path) -> None:
    """Reusing a built-in name is an error that names the entry and the config file."""
    config.write_text(f'[sae.layer20]\nrepo = "me/x"\nfile = "a.pt"\nmodel = "{TINY_MODEL}"\nlayer = 20\n')
    with pytest.raises(UsageError) as caught:
        all_specs()
    assert "shadow the built-in SAE 'layer20'" in caught.value.message
    assert str(config) in caught.value.message


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ('repo = "me/x"\nmodel = "{model}"\nlayer = 1\n', "exactly one of folder"),
        (
            'repo = "me/x"\nfolder = "f"\nfile = "a.pt"\nmodel = "{model}"\nlayer = 1\n',
            "exactly one of folder",
        ),
        ('repo = "me/x"\nfile = "a.pt"\nlayer = 1\n', "lacks model"),
        ('repo = "me/x"\nfile = "a.pt"\nmodel = "ViT-L-14"\nlayer = 1\n', "hf-hub:ORG/NAME"),
        ('repo = "me"\nfile = "a.pt"\nmodel = "{model}"\nlayer = 1\n', "ORG/NAME"),
        ('repo = "me/x"\nfile = "a.pt"\nmodel = "{model}"\nlayer = "20"\n', "layer must be an integer"),
        ('repo = "me/x"\nfile = "a.pt"\nmodel = "{model}"\nlayer = -1\n', "layer must be >= 0"),
        ('repo = "me/x"\nfile = "a.pt"\nmodel = "{model}"\nlayer = 1\nk = 0\n', "k must be positive"),
        ('repo = "me/x"\nfile = "a.pt"\nmodel = "{model}"\nlayer = 1\nlayers = 2\n', "unknown keys layers"),
        ('repo = "me/x"\nfile = "/abs.pt"\nmodel = "{model}"\nlayer = 1\n', "path inside the repo"),
    ],
)
def test_invalid_entries_are_usage_errors(config: Path, body: str, complaint: str) -> None:
    """Every malformed entry is a UsageError that says what is wrong and where."""
    config.write_text("[sae.bad]\n" + body.format(model=TINY_MODEL), encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        user_specs()
    assert complaint in caught.value.message
    assert caught.value.message.startswith(f"config {config}: [sae.bad]")


def test_broken_toml_is_a_usage_error(config: Path) -> None:
    """A file that is not TOML is reported with its path."""
    config.write_text("[sae.x\nrepo = ", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid TOML"):
        get_spec("layer20")


def test_missing_config_file_means_builtins_only(config: Path) -> None:
    """No config file is fine: only the built-ins exist."""
    assert not config.exists()
    assert user_specs() == []
    assert get_spec("layer2").layer == 2


def test_default_config_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without $SAETUI_CONFIG: $XDG_CONFIG_HOME/saetui/config.toml, else ~/.config/saetui/config.toml."""
    monkeypatch.delenv("SAETUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "saetui" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "saetui" / "config.toml"
