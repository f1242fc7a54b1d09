"""Deterministic demo warehouse: ~300 SKUs, ~600 bins, stock, and 20 open pick tasks.

The same seed number always builds the same warehouse (bin check digits and SKUs included),
so scripted demos and tests can rely on it. The anchors the demo speaks about are fixed:
SKU 104417 (with its look-alike 104471) sits only at A-12-03 with 40 units, A-14-01 is
empty, and pick task P0001 asks for 5 of SKU 104417 from A-12-03.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass
from pathlib import Path

from device.inventory.db import Conn, Database, open_database
from device.inventory.operators import seed_operators
from device.inventory.tokens import store_token
from device.tools.speech import spoken_location

DEMO_DEVICE = "demo-01"
DEMO_SKU = "104417"
DEMO_LOOKALIKE_SKU = "104471"
DEMO_LOCATION = "A-12-03"
DEMO_QUANTITY = 40
DEMO_EMPTY_LOCATION = "A-14-01"
DEFAULT_SEED_NUMBER = 7

AISLE_ZONES = {
    "A": "DRY", "B": "DRY", "C": "DRY", "D": "DRY", "E": "DRY",
    "F": "CHL", "G": "CHL", "H": "FRZ", "J": "BULK", "K": "BULK",
}  # fmt: skip
BAYS = range(1, 16)
LEVELS = range(1, 5)
HOLD_BINS = [f"Q-{bay:02d}-{level:02d}" for bay in (1, 2) for level in LEVELS]

# (zone, unit, name template, variant lists). Variants of one family are look-alikes.
FAMILIES: list[tuple[str, str, str, list[list[str]]]] = [
    ("DRY", "box", "Nitrile gloves, {}, size {}, box of 100",
     [["blue", "black", "white"], ["S", "M", "L", "XL"]]),
    ("DRY", "bag", "Cable ties {} mm, {}, bag of 100",
     [["100", "200", "300", "450"], ["black", "white", "red"]]),
    ("DRY", "roll", "Packing tape {} mm, {}, roll", [["48", "72"], ["clear", "brown", "printed"]]),
    ("DRY", "each", "Cardboard box, size {}, {} wall",
     [["1", "2", "3", "4", "5", "6", "7", "8"], ["single", "double"]]),
    ("DRY", "pack", "{} batteries, pack of {}", [["AA", "AAA", "C", "D"], ["4", "8", "24"]]),
    ("DRY", "each", "Hi-vis vest, {}, size {}", [["yellow", "orange"], ["M", "L", "XL", "XXL"]]),
    ("DRY", "box", "Wood screws {} mm, box of {}",
     [["3.5x30", "4x40", "5x50", "6x60", "6x80"], ["100", "200"]]),
    ("DRY", "case", "Pasta {} 500 g, case of {}",
     [["penne", "fusilli", "spaghetti", "farfalle", "linguine"], ["12", "24"]]),
    ("DRY", "case", "Rice {} {}, case of 10",
     [["basmati", "jasmine", "long grain", "arborio"], ["1 kg", "5 kg"]]),
    ("DRY", "bag", "Coffee beans, {} roast, {}", [["light", "medium", "dark"], ["500 g", "1 kg"]]),
    ("DRY", "box", "Tea bags, {}, box of {}",
     [["black", "green", "mint", "chamomile"], ["40", "80", "240"]]),
    ("DRY", "roll", "Thermal labels {} mm, {} per roll",
     [["50x25", "100x50", "100x150"], ["500", "1000"]]),
    ("DRY", "case", "Canned {} 400 g, case of {}",
     [["tomatoes", "chickpeas", "kidney beans", "sweetcorn", "peaches"], ["12", "24"]]),
    ("DRY", "each", "Safety glasses, {} lens, {} frame",
     [["clear", "tinted", "yellow"], ["black", "blue"]]),
    ("DRY", "case", "Olive oil {}, {}, case of 6",
     [["500 ml", "1 L", "5 L"], ["virgin", "extra virgin"]]),
    ("DRY", "box", "Wall plugs {} mm, {}, box of 100",
     [["5", "6", "8", "10"], ["brown", "red", "grey"]]),
    ("DRY", "pack", "Paper towels, {}-ply, pack of {}", [["1", "2", "3"], ["6", "24"]]),
    ("DRY", "roll", "Bin bags {} L, {}, roll", [["60", "90", "120"], ["black", "clear"]]),
    ("CHL", "case", "Cream, {}, {}, case of 12",
     [["single", "double", "whipping", "sour"], ["300 ml", "1 L"]]),
    ("CHL", "tray", "Fresh {} {}, tray",
     [["tortellini", "ravioli", "tagliatelle"], ["250 g", "1 kg"]]),
    ("FRZ", "case", "Frozen pizza, {}, case of {}",
     [["margherita", "pepperoni", "vegetable", "ham"], ["6", "12"]]),
    ("BULK", "sack", "Cat litter, {}, {} kg, sack", [["clumping", "wood pellet"], ["10", "20"]]),
    ("CHL", "crate", "Milk, {}, {}, crate", [["whole", "semi-skimmed", "skimmed", "oat"],
                                             ["1 L x 12", "2 L x 6"]]),
    ("CHL", "tray", "Yoghurt, {}, {}, tray of 6",
     [["plain", "strawberry", "vanilla", "peach", "cherry"], ["150 g", "500 g"]]),
    ("CHL", "case", "Butter, {}, {}, case of 20", [["salted", "unsalted"], ["250 g", "500 g"]]),
    ("CHL", "each", "Cheddar, {}, {} block",
     [["mild", "mature", "extra mature"], ["1 kg", "2.5 kg"]]),
    ("CHL", "tray", "Free-range eggs, {}, tray of {}", [["medium", "large"], ["30", "60"]]),
    ("CHL", "case", "Orange juice {}, {}, case of 6", [["1 L", "1.75 L"], ["smooth", "with bits"]]),
    ("CHL", "case", "Sliced {} {}, case of 10", [["ham", "turkey", "chicken"], ["100 g", "200 g"]]),
    ("FRZ", "case", "Frozen {} {}, case of 4",
     [["peas", "sweetcorn", "mixed vegetables", "spinach"], ["1 kg", "2.5 kg"]]),
    ("FRZ", "case", "Frozen chips, {} cut, {}, case of 4",
     [["straight", "crinkle", "steak"], ["2.5 kg", "5 kg"]]),
    ("FRZ", "tub", "Ice cream, {}, {} tub",
     [["vanilla", "chocolate", "strawberry"], ["2 L", "5 L"]]),
    ("FRZ", "case", "Frozen {} fillets, {}, case of 10",
     [["cod", "haddock", "salmon"], ["skin on", "skinless"]]),
    ("BULK", "sack", "{} flour {}, sack", [["plain", "strong", "wholemeal", "self-raising"],
                                          ["16 kg", "25 kg"]]),
    ("BULK", "sack", "{} sugar {}, sack", [["granulated", "caster", "brown"], ["25 kg", "50 kg"]]),
    ("BULK", "pallet", "Bottled water {}, {}, pallet",
     [["500 ml", "1.5 L"], ["still", "sparkling"]]),
    ("BULK", "roll", "Pallet wrap {} micron, {} mm, roll", [["17", "20", "23"], ["400", "500"]]),
    ("BULK", "each", "Wood pallet, {}, {}", [["EUR", "UK", "half"], ["new", "reconditioned"]]),
    ("BULK", "sack", "{} {} kg, sack", [["road salt", "cement", "sharp sand", "gravel"],
                                       ["20", "25"]]),
    ("BULK", "drum", "{} {}, drum", [["hydraulic oil", "engine oil", "screen wash"],
                                     ["25 L", "205 L"]]),
]  # fmt: skip

QUANTITY_RANGE = {"DRY": (5, 120), "CHL": (6, 60), "FRZ": (4, 40), "BULK": (1, 24)}


class SeedError(Exception):
    pass


@dataclass(frozen=True)
class SeedReport:
    items: int
    locations: int
    stocked_locations: int
    empty_locations: int
    open_picks: int
    confusable_pairs: int
    device_id: str
    token: str


def gtin13_check_digit(first12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def is_valid_gtin13(gtin: str) -> bool:
    return len(gtin) == 13 and gtin.isdigit() and gtin13_check_digit(gtin[:12]) == gtin[12]


def demo_token_path(db_path: Path) -> Path:
    """Where `seed_demo` leaves the demo device's token (the database keeps only its hash)."""
    return db_path.with_name(db_path.name + ".demo-token")


def _names(rng: random.Random) -> list[tuple[str, str, str, int]]:
    """(zone, unit, name, family index) for every variant of every family."""
    out = []
    for index, (zone, unit, template, variants) in enumerate(FAMILIES):
        for combo in itertools.product(*variants):
            out.append((zone, unit, template.format(*combo), index))
    rng.shuffle(out)
    return out


def _build_items(
    rng: random.Random,
) -> tuple[list[tuple[str, str, str, str, str]], list[tuple[str, str, str]]]:
    names = _names(rng)
    demo_name = "Nitrile gloves, blue, size M, box of 100"
    lookalike_name = "Nitrile gloves, blue, size L, box of 100"
    used_skus = {DEMO_SKU, DEMO_LOOKALIKE_SKU}
    used_gtins: set[str] = set()
    items: list[tuple[str, str, str, str, str]] = []  # sku, gtin, name, unit, zone
    family_of: dict[str, int] = {}
    for zone, unit, name, family in names:
        if name == demo_name:
            sku = DEMO_SKU
        elif name == lookalike_name:
            sku = DEMO_LOOKALIKE_SKU
        else:
            sku = str(rng.randrange(100000, 1000000))
            while sku in used_skus:
                sku = str(rng.randrange(100000, 1000000))
            used_skus.add(sku)
        gtin = ""
        while not gtin or gtin in used_gtins:
            body = "50" + "".join(str(rng.randrange(10)) for _ in range(10))
            gtin = body + gtin13_check_digit(body)
        used_gtins.add(gtin)
        items.append((sku, gtin, name, unit, zone))
        family_of[sku] = family
    pairs: list[tuple[str, str, str]] = [(DEMO_SKU, DEMO_LOOKALIKE_SKU, "similar_sku")]
    by_family: dict[int, list[str]] = {}
    for sku, *_ in items:
        by_family.setdefault(family_of[sku], []).append(sku)
    for family_skus in by_family.values():
        for a, b in zip(family_skus[:6:2], family_skus[1:6:2], strict=False):
            if {a, b} != {DEMO_SKU, DEMO_LOOKALIKE_SKU}:
                pairs.append((a, b, "similar_name"))
    return items, pairs


def _build_locations(rng: random.Random) -> list[tuple[str, str, str, str]]:
    codes = [
        (f"{aisle}-{bay:02d}-{level:02d}", zone)
        for aisle, zone in AISLE_ZONES.items()
        for bay in BAYS
        for level in LEVELS
    ] + [(code, "QA-HOLD") for code in HOLD_BINS]
    check_digits = rng.sample(range(100, 1000), len(codes))
    return [
        (code, zone, spoken_location(code), str(digits))
        for (code, zone), digits in zip(codes, check_digits, strict=True)
    ]


def _build_stock(
    rng: random.Random,
    items: list[tuple[str, str, str, str, str]],
    locations: list[tuple[str, str, str, str]],
) -> list[tuple[str, str, int]]:
    free: dict[str, list[str]] = {}
    for code, zone, _, _ in locations:
        if code not in (DEMO_LOCATION, DEMO_EMPTY_LOCATION) and zone != "QA-HOLD":
            free.setdefault(zone, []).append(code)
    for codes in free.values():
        rng.shuffle(codes)
    stock = [(DEMO_LOCATION, DEMO_SKU, DEMO_QUANTITY)]
    for sku, _, _, _, zone in items:
        if sku == DEMO_SKU:
            continue
        low, high = QUANTITY_RANGE[zone]
        for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
            if free[zone]:
                stock.append((free[zone].pop(), sku, rng.randint(low, high)))
    return stock


def _build_picks(
    rng: random.Random, stock: list[tuple[str, str, int]], count: int = 20
) -> list[tuple[str, int, str, str, int]]:
    picks = [("P0001", 1, DEMO_SKU, DEMO_LOCATION, 5)]
    candidates = [row for row in stock if row[0] != DEMO_LOCATION and row[2] >= 2]
    for seq, (location, sku, quantity) in enumerate(rng.sample(candidates, count - 1), start=2):
        picks.append((f"P{seq:04d}", seq, sku, location, rng.randint(1, min(12, quantity - 1))))
    return picks


def is_seeded(db: Database) -> bool:
    return bool(db.read(lambda c: c.execute("SELECT count(*) FROM items").fetchone()[0]))


def seed_demo(
    db: Database, *, number: int = DEFAULT_SEED_NUMBER, token_file: Path | None = None
) -> SeedReport:
    """Fill an empty database with the demo warehouse and mint the demo device's token.

    The token goes to `token_file` (mode 0600), by default next to a SQLite file; on
    PostgreSQL without a `token_file` it is only in the report.
    """
    rng = random.Random(number)
    items, pairs = _build_items(rng)
    locations = _build_locations(rng)
    stock = _build_stock(rng, items, locations)
    picks = _build_picks(rng, stock)

    def load(conn: Conn) -> str:
        if conn.execute("SELECT count(*) FROM items").fetchone()[0]:
            raise SeedError(
                f"{db.url} already holds inventory data; seed a new file or pass --reset"
            )
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", items)
        conn.executemany("INSERT INTO confusables VALUES (?, ?, ?)", pairs)
        conn.executemany(
            "INSERT INTO confusables VALUES (?, ?, ?)", [(b, a, why) for a, b, why in pairs]
        )
        conn.executemany("INSERT INTO locations VALUES (?, ?, ?, ?)", locations)
        conn.executemany(
            "INSERT INTO stock (location, sku, quantity, version) VALUES (?, ?, ?, 1)", stock
        )
        conn.executemany(
            "INSERT INTO pick_tasks (id, seq, sku, location, quantity) VALUES (?, ?, ?, ?, ?)",
            picks,
        )
        seed_operators(conn)
        return store_token(conn, DEMO_DEVICE)

    token = db.write(load)
    path = token_file or (demo_token_path(db.path) if db.path is not None else None)
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
    stocked = len({row[0] for row in stock})
    return SeedReport(
        items=len(items),
        locations=len(locations),
        stocked_locations=stocked,
        empty_locations=len(locations) - stocked,
        open_picks=len(picks),
        confusable_pairs=len(pairs),
        device_id=DEMO_DEVICE,
        token=token,
    )


def check_digits_for(target: str | Path, location: str) -> str:
    """The label's check digits, for scripted workers in demos and tests (never via the API)."""
    db = open_database(target)
    try:
        row = db.read(
            lambda c: c.execute(
                "SELECT check_digits FROM locations WHERE code = ?", (location,)
            ).fetchone()
        )
    finally:
        db.close()
    if row is None:
        raise SeedError(f"no location {location} in {target}")
    return str(row[0])
