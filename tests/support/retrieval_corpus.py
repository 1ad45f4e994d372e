"""A corpus built so that each retrieval mode has something only it finds: a part number among
look-alikes (keyword search), a paraphrase with no word in common (dense search)."""

from __future__ import annotations

from pathlib import Path

CORPUS = {
    "parts/fan.md": (
        "# Cooling fan\n\nThe enclosure cooling fan runs when the logger board is warmer than 45 degrees. "
        "Replacement fan assembly: part number AUR-7731-X. Remove the four screws on the rear panel, "
        "unplug the two-pin connector and slide the fan out. Fit the new unit with the airflow arrow "
        "pointing outwards."
    ),
    "parts/codes.md": (
        "# Similar part numbers\n\nDo not confuse these with each other. AUR-7713-Y is the mounting "
        "bracket kit. AUR-1377-X is the solar regulator. AUR-7731-Y is the spare fuse set. AUR-7371-X "
        "is the antenna cable."
    ),
    "parts/inventory.md": (
        "# Inventory of part numbers\n\nStock list of part numbers for AUR station spares, kits and "
        "assemblies: AUR-7000-A, AUR-7100-B, AUR-7200-C, AUR-7300-D, AUR-7400-E, AUR-7500-F, "
        "AUR-7600-G. Part numbers are printed on a label."
    ),
    "sensors/anemometer.md": (
        "# Anemometer\n\nThe cup anemometer on the mast top records wind speed. Its three cups spin "
        "faster in stronger gusts and a reed switch counts revolutions."
    ),
    "sensors/rain.md": (
        "# Rain gauge\n\nThe tipping-bucket rain gauge reports precipitation in 0.2 mm steps. Clean the "
        "funnel every month."
    ),
    "power/battery.txt": (
        "The lead-acid battery keeps the station running overnight. Charge it with the solar "
        "regulator; replace it every four years."
    ),
    "errors.csv": (
        "code,meaning\nE-214,Sensor bus timeout: the logger lost contact with a sensor\n"
        "E-215,Clock drift above 2 seconds\nE-301,Low battery voltage"
    ),
}

IDENTIFIER_QUERY = "AUR-7731-X"  # only in parts/fan.md; look-alikes elsewhere
PARAPHRASE_QUERY = "What tells you how quickly the air is moving?"  # sensors/anemometer.md
BOTH_QUERY = "What tells you how quickly the air is moving, and what is AUR-7731-X?"


def write_corpus(folder: Path) -> Path:
    for rel, text in CORPUS.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
