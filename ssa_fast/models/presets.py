"""Model sizes. `paper` is design.md section 4; `small` keeps the topology with fewer channels and
units (CPU demos and tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Preset:
    conv1_channels: int = 128
    conv_channels: int = 256  # conv2 .. conv6
    n_convs: int = 6
    kernel: tuple[int, int] = (5, 3)  # (time, freq)
    pool: tuple[int, int] = (2, 2)  # paper 2x2; Chen et al.'s code used (2, 4)
    linear: int = 768
    lstm_hidden: int = 128  # per direction: d = 2 * lstm_hidden
    embedding: int = 128  # the paper raised Chen's 64 to 128
    dropout: float = 0.0  # Chen's code had keep_prob 1
    leaky_slope: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "paper": Preset(),
    "small": Preset(conv1_channels=16, conv_channels=32, linear=128, lstm_hidden=32,
                    embedding=32),
}


def get_preset(preset: str | Preset | dict, **overrides) -> Preset:
    if isinstance(preset, Preset):
        base = preset
    elif isinstance(preset, dict):
        base = Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in preset.items()})
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or a Preset, got {preset!r}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()
                 if v is not None}
    return replace(base, **overrides)
