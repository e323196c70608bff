"""The example data source: a tiny offline table."""

from __future__ import annotations

PLANETS = [
    # name, radius (Earth radii), semi-major axis (au), orbital period (days)
    ("Mercury", 0.383, 0.387, 87.97),
    ("Venus", 0.949, 0.723, 224.70),
    ("Earth", 1.000, 1.000, 365.26),
    ("Mars", 0.532, 1.524, 686.98),
]


class SolarSystemConstants:
    columns = ("pl_name", "pl_rade", "pl_orbsmax", "pl_orbper")
    units = {"pl_rade": "Earth radii", "pl_orbsmax": "au", "pl_orbper": "days"}

    def rows(self) -> list[tuple]:
        return list(PLANETS)
