"""The generated world of tailor-tiny: one fictional outdoor-gear company and its text.

`build_world(0)` fixes the company, its products, orders and policies. Everything else is text
about that world: `corpus_documents` (pre-training), `domain_documents` (a held-out kind of text
for domain adaptation) and the demo task data sets (sentiment, intents, support chat, extractive
QA). Standard library only; every function takes a seed and is byte-for-byte deterministic
across processes (`random.Random` instances seeded from strings, no set iteration, no hash()).

Most of this file is word lists and sentence templates. A template is a string with
`[a|b|c]` for a random choice (nestable, `[a|]` makes a part optional) and `{name}` for a slot,
filled from the caller's values or, failing that, from the shared word pools in `_POOLS`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tailor.data.check import normalize_text

# ----------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Product:
    name: str  # "Alder Daypack"
    category: str  # one of _CATALOGUE's keys
    price: float
    colour: str
    material: str
    warranty_years: int
    features: tuple[str, ...]  # noun phrases with their article: "a padded hip belt"
    sku: str

    @property
    def kind(self) -> str:
        """The product type ("Daypack"): the name without its first word."""
        return self.name.split(" ", 1)[1]

    @property
    def noun(self) -> str:
        """The common noun for the product ("daypack"), for prose."""
        return _TYPE_NOUN[self.kind]


@dataclass(frozen=True)
class Order:
    number: str  # "FH-10234"
    customer: str
    items: tuple[str, ...]  # product names
    status: str  # one of ORDER_STATUSES
    placed: str  # "12 March"
    city: str


@dataclass(frozen=True)
class World:
    company: str
    products: tuple[Product, ...]
    policies: dict[str, str]  # fact name -> value as written in text ("30", "$4.99")
    headquarters: str
    founded: int
    stores: tuple[str, ...]  # towns with a shop
    warehouses: tuple[str, ...]  # towns with a distribution centre
    staff: tuple[tuple[str, str], ...]  # (name, role)
    customers: tuple[str, ...]
    orders: tuple[Order, ...]

    def product(self, name: str) -> Product:
        """The product called `name`."""
        return next(p for p in self.products if p.name == name)


COMPANY = "Fernhollow Outfitters"
SHORT = "Fernhollow"
_YEAR = 2025  # "now" in the world
ORDER_STATUSES = ("processing", "shipped", "out for delivery", "delivered")

# category -> product types (type, noun, price range, materials), warranties, colours, uses
_CATALOGUE: dict[str, dict] = {
    "bags": {
        "types": (
            ("Daypack", "daypack", (28, 79), ("recycled nylon", "ripstop polyester", "waxed canvas")),
            ("Rucksack", "rucksack", (89, 189), ("ripstop nylon", "recycled polyester")),
            ("Duffel", "duffel bag", (59, 129), ("coated polyester", "waxed canvas")),
            ("Sling Bag", "sling bag", (25, 55), ("recycled nylon", "organic cotton canvas")),
            ("Travel Pack", "travel pack", (99, 169), ("ripstop nylon", "recycled polyester")),
            ("Hip Pack", "hip pack", (19, 45), ("recycled nylon", "ripstop polyester")),
        ),
        "warranty": (2, 3, 5),
        "colours": ("forest green", "slate grey", "rust orange", "navy blue", "charcoal", "ochre",
                    "sand", "burgundy", "teal", "olive"),
        "uses": ("day hikes", "the daily commute", "weekend trips", "city travel", "long walks",
                 "school runs", "short breaks away", "festival weekends", "cycling to work"),
    },
    "tents": {
        "types": (
            ("Tent", "tent", (89, 329), ("ripstop nylon", "silicone-coated polyester")),
            ("Tarp", "tarp", (39, 99), ("ripstop nylon", "silicone-coated nylon")),
            ("Bivy", "bivy bag", (69, 159), ("waterproof nylon", "breathable polyester")),
            ("Hammock", "hammock", (35, 89), ("parachute nylon", "ripstop nylon")),
            ("Canopy", "canopy", (49, 139), ("polyester canvas", "coated polyester")),
            ("Family Tent", "family tent", (199, 459), ("cotton canvas", "polyester taffeta")),
        ),
        "warranty": (2, 3, 5),
        "colours": ("moss green", "sand", "sky blue", "stone", "olive", "rust orange", "grey"),
        "uses": ("wild camping", "festival weekends", "family holidays", "lightweight backpacking",
                 "garden sleepovers", "bikepacking trips", "camping by the coast", "nights under the stars",
                 "scout camps"),
    },
    "cookware": {
        "types": (
            ("Camp Stove", "camp stove", (39, 119), ("stainless steel", "aluminium alloy")),
            ("Kettle", "kettle", (19, 45), ("stainless steel", "hard-anodised aluminium", "titanium")),
            ("Cook Set", "cook set", (34, 99), ("hard-anodised aluminium", "titanium")),
            ("Skillet", "skillet", (24, 69), ("cast iron", "carbon steel")),
            ("Insulated Mug", "insulated mug", (12, 29), ("stainless steel", "enamelled steel")),
            ("Water Bottle", "water bottle", (12, 35), ("stainless steel", "recycled plastic")),
        ),
        "warranty": (1, 2, 5),
        "colours": ("graphite", "silver", "sage green", "copper", "matte black", "cream"),
        "uses": ("cooking on the trail", "car camping", "quick brews on a hilltop",
                 "family picnics", "trips in cold weather", "life in a camper van",
                 "lunch breaks outdoors", "fishing trips", "beach barbecues"),
    },
    "lighting": {
        "types": (
            ("Headlamp", "headlamp", (19, 69), ("aluminium alloy", "recycled plastic")),
            ("Lantern", "lantern", (24, 79), ("brushed steel", "recycled plastic")),
            ("Torch", "torch", (15, 59), ("aluminium alloy", "rubberised plastic")),
            ("Clip Light", "clip light", (12, 29), ("recycled plastic", "aluminium alloy")),
            ("Solar Light", "solar light", (19, 49), ("recycled plastic", "aluminium alloy")),
            ("Reading Light", "reading light", (12, 32), ("recycled plastic", "brushed steel")),
        ),
        "warranty": (1, 2, 3),
        "colours": ("black", "yellow", "red", "graphite", "orange", "white", "blue"),
        "uses": ("night walks", "reading in the tent", "power cuts at home", "early starts",
                 "evenings around camp", "cycling home after dark", "fishing at dusk", "checking on the hens at night",
                 "walking the dog in winter"),
    },
    "clothing": {
        "types": (
            ("Rain Jacket", "rain jacket", (89, 229), ("three-layer waterproof nylon", "recycled polyester")),
            ("Fleece", "fleece", (39, 89), ("recycled polyester fleece", "brushed grid fleece")),
            ("Down Vest", "down vest", (69, 149), ("responsibly sourced down", "recycled nylon")),
            ("Softshell", "softshell jacket", (79, 159), ("stretch softshell fabric", "recycled polyester")),
            ("Base Layer", "base layer", (29, 69), ("merino wool", "merino and nylon blend")),
            ("Parka", "parka", (149, 279), ("recycled synthetic insulation", "responsibly sourced down")),
        ),
        "warranty": (1, 2, 3),
        "colours": ("navy blue", "black", "forest green", "rust orange", "plum", "heather grey",
                    "mustard yellow", "brick red", "teal"),
        "uses": ("wet days on the hills", "cold mornings", "everyday wear", "winter walks",
                 "layering on the trail", "travel days", "dog walks in the rain", "early shifts outdoors",
                 "watching football on cold Saturdays"),
    },
    "footwear": {
        "types": (
            ("Hiking Boot", "hiking boot", (99, 199), ("full-grain leather", "suede and mesh")),
            ("Trail Shoe", "trail shoe", (69, 139), ("recycled mesh", "synthetic leather and mesh")),
            ("Sandal", "sandal", (35, 79), ("recycled webbing", "vegetable-tanned leather")),
            ("Camp Slipper", "camp slipper", (25, 49), ("quilted nylon", "wool felt")),
            ("Mid Boot", "mid boot", (89, 169), ("nubuck leather", "waterproof suede")),
            ("Wellington", "wellington", (35, 69), ("natural rubber",)),
        ),
        "warranty": (1, 2, 3),
        "colours": ("brown", "black", "grey", "olive", "tan", "navy blue", "dark green"),
        "uses": ("rocky trails", "muddy walks", "summer rambles", "wet campsites",
                 "long days on the hills", "river crossings", "town and trail", "working on the allotment",
                 "coastal paths"),
    },
}
# product type -> features it may have (noun phrases with their article)
_FEATURES = {
    "Daypack": ("a padded laptop sleeve", "two side pockets for water bottles", "water-resistant zips",
        "a ventilated back panel", "a key clip inside the lid", "reflective trim",
        "an adjustable chest strap"),
    "Rucksack": ("a padded hip belt", "a ventilated back panel", "a rain cover that tucks into the base",
        "compression straps on both sides", "an adjustable back length", "a lid pocket for small things",
        "loops for walking poles"),
    "Duffel": ("backpack straps that tuck away", "a wide zipped opening", "a separate shoe compartment",
        "grab handles at both ends", "a padded base", "lockable zips"),
    "Sling Bag": ("a quick-adjust strap", "a hidden pocket for valuables", "water-resistant zips",
        "a key clip", "reflective trim", "a padded phone pocket"),
    "Travel Pack": ("a clamshell opening like a suitcase", "lockable zips", "a padded laptop sleeve",
        "stowaway shoulder straps", "a padded hip belt", "a detachable day bag"),
    "Hip Pack": ("a quick-release buckle", "a hidden pocket for valuables", "water-resistant zips",
        "a bottle holster", "a key clip", "reflective trim"),
    "Tent": ("colour-coded poles", "two doors and two porches", "a fully taped floor", "mesh inner panels",
        "vents at both ends", "a lantern hook in the roof", "storm guy lines"),
    "Tarp": ("reinforced tie-out points", "storm guy lines", "aluminium pegs", "a roomy stuff sack",
        "taped seams", "loops for walking poles"),
    "Bivy": ("a mesh window over your face", "a fully taped floor", "a side zip", "a roomy stuff sack",
        "a breathable top panel", "a hoop to keep the fabric off your face"),
    "Hammock": ("tree-friendly straps", "a built-in bug net", "aluminium hooks",
        "a ridgeline with a pocket", "a roomy stuff sack", "a small repair kit"),
    "Canopy": ("adjustable legs", "a wheeled carry bag", "side walls that zip on", "storm guy lines",
        "steel pegs", "vents in the roof"),
    "Family Tent": ("two bedrooms and a living area", "a bathtub groundsheet", "a large front porch",
        "blackout bedrooms", "a door you can stand up in", "vents at both ends",
        "a lantern hook in the roof"),
    "Camp Stove": ("a push-button igniter", "a windshield", "a folding pot support",
        "a flame control dial", "a hard carry case", "a wide stable base"),
    "Kettle": ("a folding handle", "a pouring spout", "a lid with a steam hole",
        "measuring marks on the inside", "a mesh storage bag", "a wide stable base"),
    "Cook Set": ("two pots and a frying pan", "a folding handle", "a lid that doubles as a plate",
        "a nesting design that saves space", "a mesh storage bag", "measuring marks on the inside"),
    "Skillet": ("a heat-resistant grip", "a pouring lip on each side", "a folding handle",
        "a pre-seasoned surface", "a thick even base", "a fitted lid"),
    "Insulated Mug": ("double-wall insulation", "a leak-proof lid", "a heat-resistant grip",
        "a slide-shut sip hole", "a wide stable base", "a carry loop"),
    "Water Bottle": ("double-wall insulation", "a leak-proof lid", "a carry loop", "a wide mouth for ice",
        "a built-in filter", "measuring marks on the side"),
    "Headlamp": ("a red light mode", "a USB-C charging port", "a lock switch", "a tilting head",
        "a soft silicone strap", "five brightness levels", "a battery level indicator"),
    "Lantern": ("a hanging hook", "a dimmer dial", "a battery that lasts up to 40 hours",
        "a USB-C charging port", "a warm white glow", "a folding handle", "a water-resistant body"),
    "Torch": ("a focusing beam", "a lock switch", "a USB-C charging port", "a water-resistant body",
        "a magnetic base", "a wrist strap"),
    "Clip Light": ("a strong spring clip", "a magnetic base", "a red light mode", "a USB-C charging port",
        "three brightness levels", "a water-resistant body"),
    "Solar Light": ("a fold-out solar panel", "a USB-C charging port", "a hanging hook",
        "a battery level indicator", "a water-resistant body", "a power bank for your phone"),
    "Reading Light": ("a flexible neck", "a strong spring clip", "a dimmer dial", "a warm white glow",
        "a USB-C charging port", "a red light mode"),
    "Rain Jacket": ("taped seams", "an adjustable hood", "underarm vents", "two zipped hand pockets",
        "a dropped hem", "a packable design"),
    "Fleece": ("thumb loops", "a high collar", "two zipped hand pockets", "a chest pocket",
        "elastic cuffs", "a two-way front zip"),
    "Down Vest": ("a packable design", "two zipped hand pockets", "a high collar", "a chest pocket",
        "reflective details", "a dropped hem"),
    "Softshell": ("an adjustable hood", "two zipped hand pockets", "a chest pocket", "elastic cuffs",
        "reflective details", "a two-way front zip"),
    "Base Layer": ("thumb loops", "flat seams that don't rub", "a half-length zip", "a long back",
        "a high collar", "odour-resistant fabric"),
    "Parka": ("an adjustable hood", "a two-way front zip", "fleece-lined hand pockets", "elastic cuffs",
        "a dropped hem", "a high collar"),
    "Hiking Boot": ("a waterproof membrane", "a padded ankle collar", "a reinforced toe cap",
        "deep lugs for mud", "a cushioned insole", "speed laces"),
    "Trail Shoe": ("a grippy rubber outsole", "a lightweight foam midsole", "a pull loop at the heel",
        "a removable footbed", "a wide toe box", "a quick-drying lining"),
    "Sandal": ("a grippy rubber outsole", "adjustable straps", "a cushioned footbed",
        "a quick-drying lining", "a toe guard", "a heel strap with a buckle"),
    "Camp Slipper": ("a packable design", "a cushioned insole", "a grippy rubber outsole",
        "a warm fleece lining", "a pull loop at the heel", "a wide toe box"),
    "Mid Boot": ("a waterproof membrane", "a padded ankle collar", "a grippy rubber outsole",
        "speed laces", "a removable footbed", "a reinforced toe cap"),
    "Wellington": ("a warm fleece lining", "a grippy rubber outsole", "a pull loop at the heel",
        "an adjustable calf gusset", "a cushioned insole", "deep lugs for mud"),
}
_TYPE_NOUN = {t[0]: t[1] for c in _CATALOGUE.values() for t in c["types"]}
_CATEGORY_CODE = {"bags": "BG", "tents": "TN", "cookware": "CK", "lighting": "LT",
                  "clothing": "CL", "footwear": "FW"}
_CATEGORY_TITLE = {"bags": "Bags and packs", "tents": "Tents and shelters",
                   "cookware": "Camp kitchen", "lighting": "Lights and lamps",
                   "clothing": "Clothing", "footwear": "Footwear"}

_NAME_WORDS = (
    "Alder", "Birch", "Cedar", "Heron", "Lark", "Marten", "Quill", "Rowan", "Sorrel", "Thistle",
    "Wren", "Bramble", "Juniper", "Larch", "Hazel", "Linden", "Otter", "Pike", "Sable", "Willow",
    "Yarrow", "Kestrel", "Finch", "Cobble", "Bracken", "Holly", "Ember", "Harrier", "Merlin",
    "Badger", "Curlew", "Plover", "Shale", "Flint", "Gorse", "Aspen", "Hawthorn", "Sedge",
    "Tamarack", "Corrie",
)
_FIRST_NAMES = (
    "Amara", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hamish", "Isla", "Jonah",
    "Kiran", "Lena", "Marcus", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Samir", "Tessa",
    "Umar", "Vera", "Wesley", "Ximena", "Yusuf", "Zara", "Alice", "Bilal", "Carmen", "Dev",
    "Eliza", "Felix", "Gemma", "Hugo", "Ines", "Jack", "Keisha", "Liam", "Maya", "Noah",
    "Olivia", "Pavel", "Ruth", "Sean", "Tara", "Victor", "Willa", "Aidan", "Bea", "Callum",
    "Daisy", "Ewan", "Freya", "George", "Hannah", "Ivan", "Jade", "Kofi", "Lucy", "Mateo",
    "Niamh", "Omar", "Poppy", "Rhys", "Sofia", "Theo", "Uma", "Wanda", "Yasmin", "Zeke",
    "Agnes", "Boris", "Cora", "Dmitri", "Esme", "Finn", "Gita", "Harvey", "Ida", "Joel",
    "Kate", "Leon", "Mina", "Nico", "Orla", "Peter", "Rania", "Stan", "Tilly", "Vik",
    "Adaeze", "Bruno", "Cecily", "Dario", "Elif", "Fergus", "Greta", "Hector", "Imogen", "Jasper",
    "Kasia", "Lorcan", "Marisol", "Nils", "Ottilie", "Pablo", "Rowena", "Soren", "Thea", "Ulrich",
    "Valentina", "Wilf", "Yara", "Zoltan", "Anouk", "Bram", "Clementine", "Dafydd", "Eun", "Florian",
)
_LAST_NAMES = (
    "Abbott", "Baines", "Carver", "Dalton", "Ellery", "Fenwick", "Garside", "Hollis", "Ingram",
    "Jarvis", "Kendal", "Lowry", "Mercer", "Nash", "Okafor", "Pryce", "Quayle", "Rennie",
    "Shah", "Thorne", "Underwood", "Varga", "Whitlock", "Yates", "Zielinski", "Ashworth",
    "Bell", "Chowdhury", "Doyle", "Evans", "Fraser", "Gill", "Hughes", "Iqbal", "Jensen",
    "Kowalski", "Lindqvist", "Moreno", "Novak", "O'Neill", "Patel", "Reyes", "Sato", "Tran",
    "Usman", "Vance", "Webb", "Young", "Akhtar", "Brennan", "Costa", "Drummond", "Esposito",
    "Fairley", "Grant", "Hale", "Ito", "Kaur", "Lambert", "Mensah", "Nair", "Osei", "Perrin",
    "Quinn", "Rowe", "Silva", "Tanaka", "Wilde", "Ahmed", "Barlow", "Caine", "Delaney",
    "Achterberg", "Bishop", "Cartwright", "Dunmore", "Eriksen", "Forsyth", "Goldberg", "Hargreaves",
    "Ivanova", "Jowett", "Kelleher", "Llewellyn", "MacLeod", "Nakamura", "Oyelaran", "Pemberton",
    "Rasmussen", "Stroud", "Tolhurst", "Vasquez", "Winterbottom", "Yilmaz",
)
_TOWNS = (
    "Marlow Bay", "Ashcombe", "Dunmere", "Pellworth", "Calder Falls", "Hollin Cross", "Redwater",
    "Stanmoor", "Kettleby", "Wrenfield", "Brackenford", "Tarnside", "Greyhaven", "Oakmere",
    "Saltmarsh", "Fallowfield", "Highcliff", "Millbrook", "Norbury", "Lynwood", "Cresswell",
    "Thornwick", "Harlow Green", "Elmstead", "Burnside", "Westby", "Carrick Sands", "Upton Mere",
)
_ROLES = ("support team lead", "store manager", "head of product", "warehouse manager",
          "customer support agent", "head of sustainability", "repairs coordinator",
          "marketing lead", "founder", "buyer for footwear", "buyer for camp kitchen",
          "operations director", "community manager", "customer support agent")


def _policies(rng: random.Random) -> dict[str, str]:
    ship = rng.choice((3.99, 4.99, 5.95))
    return {
        "return_window_days": str(rng.choice((30, 45, 60))),
        "refund_days": str(rng.choice((3, 5, 7))),
        "shipping_fee": f"${ship:.2f}",
        "free_shipping_threshold": f"${rng.choice((50, 60, 75)):.2f}",
        "standard_delivery": rng.choice(("3 to 5 business days", "2 to 4 business days")),
        "express_fee": f"${ship + rng.choice((7, 8)):.2f}",
        "express_delivery": "1 to 2 business days",
        "support_hours": rng.choice(("8am to 6pm", "9am to 7pm", "8am to 8pm")),
        "support_days": rng.choice(("Monday to Saturday", "Monday to Friday")),
        "support_email": "help@fernhollow.example",
        "cancel_window_hours": str(rng.choice((1, 2, 12))),
        "price_match_days": str(rng.choice((7, 14))),
        "repair_days": str(rng.choice((10, 14, 21))),
        "loyalty_scheme": "Trailhead Club",
        "loyalty_points": str(rng.choice((1, 2, 5))),
        "student_discount": f"{rng.choice((10, 15))}%",
        "gift_card_years": str(rng.choice((2, 3, 5))),
    }


def _products(rng: random.Random) -> tuple[Product, ...]:
    names = list(_NAME_WORDS)
    rng.shuffle(names)
    products, skus = [], []
    for cat, spec in _CATALOGUE.items():
        for kind, _noun, (lo, hi), materials in rng.sample(spec["types"], 5):
            price = round(rng.randint(lo, hi) + rng.choice((0.0, 0.5, 0.95)), 2)
            sku = f"{_CATEGORY_CODE[cat]}-{rng.randint(1000, 9999)}"
            while sku in skus:
                sku = f"{_CATEGORY_CODE[cat]}-{rng.randint(1000, 9999)}"
            skus.append(sku)
            products.append(Product(
                name=f"{names.pop()} {kind}", category=cat, price=price,
                colour=rng.choice(spec["colours"]), material=rng.choice(materials),
                warranty_years=rng.choice(spec["warranty"]),
                features=tuple(rng.sample(_FEATURES[kind], 3)), sku=sku,
            ))
    return tuple(products)


def build_world(seed: int = 0) -> World:
    """The one fictional world. Fixed by seed 0 for tailor-tiny; the demo datasets use the same world."""
    rng = random.Random(f"world:{seed}")
    products = _products(rng)
    towns = list(_TOWNS)
    rng.shuffle(towns)
    people = [f"{f} {la}" for f in _FIRST_NAMES for la in _LAST_NAMES]
    rng.shuffle(people)
    staff = tuple((people[i], _ROLES[i % len(_ROLES)]) for i in range(2 * len(_ROLES)))
    customers = tuple(people[100:700])
    orders, numbers = [], rng.sample(range(10000, 99999), 400)
    for i, number in enumerate(numbers):
        items = tuple(p.name for p in rng.sample(products, rng.choice((1, 1, 1, 2, 2, 3))))
        orders.append(Order(
            number=f"FH-{number}", customer=customers[i], items=items,
            status=rng.choice(ORDER_STATUSES), placed=_date(rng), city=rng.choice(towns),
        ))
    return World(
        company=COMPANY, products=products, policies=_policies(rng), headquarters=towns[0],
        founded=rng.choice((1984, 1987, 1991, 1996)), stores=tuple(towns[:7]),
        warehouses=tuple(towns[7:10]), staff=staff, customers=customers, orders=tuple(orders),
    )


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}"


# ----------------------------------------------------------------------------- templates

_COMPILED: dict[str, tuple] = {}


def _parse(t: str, i: int, inside: bool) -> tuple[object, int]:
    """Template text -> parts: str literal, list of alternative part-tuples, or (slot,)."""
    alts: list[tuple] = []
    parts: list[object] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            parts.append("".join(buf))
            buf.clear()

    while i < len(t):
        c = t[i]
        if c == "[":
            flush()
            sub, i = _parse(t, i + 1, True)
            parts.append(sub)
        elif c == "{":
            flush()
            j = t.index("}", i)
            parts.append((t[i + 1 : j],))
            i = j + 1
        elif inside and c in "|]":
            flush()
            alts.append(tuple(parts))
            parts = []
            i += 1
            if c == "]":
                return alts, i
        else:
            buf.append(c)
            i += 1
    if inside:
        raise ValueError(f"unclosed '[' in template: {t!r}")
    flush()
    return tuple(parts), i


def _compiled(template: str) -> tuple:
    parts = _COMPILED.get(template)
    if parts is None:
        parts = _COMPILED[template] = _parse(template, 0, False)[0]  # type: ignore[assignment]
    return parts  # type: ignore[return-value]


def _render(parts: tuple, rng: random.Random, slots: dict, out: list[str]) -> None:
    for p in parts:
        if type(p) is str:
            out.append(p)
        elif type(p) is list:
            _render(p[rng.randrange(len(p))], rng, slots, out)
        else:
            value = slots.get(p[0])
            if value is None:
                pool = _POOLS[p[0]]
                _render(_compiled(pool[rng.randrange(len(pool))]), rng, slots, out)
            elif type(value) is str:
                out.append(value)
            else:
                out.append(value[rng.randrange(len(value))])


def _fill(rng: random.Random, templates: str | tuple[str, ...], **slots: object) -> str:
    """Render one template (or a random one of several) with `slots`."""
    if not isinstance(templates, str):
        templates = templates[rng.randrange(len(templates))]
    out: list[str] = []
    _render(_compiled(templates), rng, slots, out)
    return "".join(out)


def say(rng: random.Random, templates: str | tuple[str, ...], **slots: object) -> str:
    """`_fill`, as a sentence: first letter capitalised."""
    text = _fill(rng, templates, **slots)
    return text[:1].upper() + text[1:]


def _a(phrase: str) -> str:
    """The phrase with its indefinite article."""
    vowel = phrase[0] in "aeiou" and not phrase.startswith(("us", "uni", "eu"))
    return ("an " if vowel else "a ") + phrase


def _money(x: float) -> str:
    return f"${x:.2f}"


def _years(n: int) -> str:
    return f"{n} year" if n == 1 else f"{n} years"


def _join(items: list[str] | tuple[str, ...]) -> str:
    """'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten")

# Shared word pools: any {name} not given by the caller is drawn from here (values are templates).
_POOLS: dict[str, tuple[str, ...]] = {
    "trip": ("a weekend hike", "a three-day trek", "a family camping trip", "a week in the hills",
             "a canoe trip on {river}", "a walking holiday", "a cycling tour", "a fishing trip",
             "a trip to {place}", "a few nights at {place}", "a school expedition",
             "a long weekend by the sea", "a winter walk over {place}", "a festival",
             "a charity walk", "a coast-to-coast walk", "my daily walks with the dog",
             "a camping trip with {relative}", "a hut-to-hut walk", "a scout camp",
             "a birthday trip to {place}", "a wet weekend at {place}", "a bike trip along {river}"),
    "place": ("Hollin Ridge", "Lake Varrow", "the Sallow Hills", "Greystone Pass", "Mirefield Moor",
              "the Dunmere coast path", "Black Tarn", "the Orrin Valley", "Kestrel Crag",
              "Pellworth Forest", "Calder Gorge", "Long Howe", "the Ashcombe Downs", "Whinfell Edge",
              "the Brackenford lakes", "Saltmarsh Point", "the Tarnside fells", "Cairn Aske",
              "Highcliff Head", "the Millbrook woods", "Skelwith Common", "Redwater Sound", "Glenmorrow",
              "the Fellside horseshoe", "Harrowby Beacon", "the Quarry Hills", "Windle Moss", "Starling Cove",
              "Ravenscar Edge", "the Tolland estuary", "Hartsop Dale", "Bleawater Forest", "Corran Sands",
              "the Northfell plateau", "Dunstan Scar"),
    "river": ("the River Esker", "the Orrin", "the Lune Water", "the River Calder",
              "the Wrenbeck", "the River Tam"),
    "relative": ("my daughter", "my son", "my partner", "my husband", "my wife", "my brother",
                 "my sister", "my dad", "my mum", "my best friend", "my niece", "my grandson",
                 "my walking group", "the kids", "two friends from work", "my father-in-law"),
    "weather": ("heavy rain", "driving rain", "strong wind", "wet snow", "thick fog", "driving sleet",
                "non-stop drizzle", "freezing rain", "gusty wind", "torrential rain", "hail",
                "sideways rain"),
    "when": ("last spring", "in March", "over the summer", "two weeks ago", "last month",
             "in the autumn", "just before Christmas", "back in January", "a few months ago",
             "at the start of the year", "last weekend", "earlier this year"),
    "span": ("two weeks", "a month", "six weeks", "three months", "about half a year",
             "nearly a year", "two seasons", "over a year", "a couple of weekends"),
    "food": ("porridge with honey", "instant noodles", "bacon sandwiches", "a big pot of chilli", "hot chocolate",
             "campfire stew", "pancakes", "fresh trout", "lentil curry", "toasted marshmallows", "beans on toast",
             "flapjacks", "soup and crusty bread", "scrambled eggs", "pasta with pesto", "fruit cake",
             "sausages and mash", "cheese and oatcakes", "mushroom risotto", "smoked mackerel", "apple crumble",
             "couscous with dried apricots", "spiced rice", "sweet tea", "cinnamon buns", "vegetable broth"),
    "wildlife": ("deer grazing beside the tent", "a heron fishing in the shallows", "buzzards circling overhead",
                 "otters playing in the river", "an owl calling from the trees", "a herd of wild ponies",
                 "red squirrels in the pines", "seals basking on the rocks", "skylarks singing above the moor",
                 "a fox nosing round the bins", "geese flying south", "a curious robin on the guy line",
                 "frogs croaking in the reeds", "hares racing across a field", "a kingfisher on the riverbank"),
    "hobby": ("pottering about in the woods", "birdwatching", "sea swimming", "taking photos of sunrises",
              "short walks with the kids", "wild swimming", "cycling to work", "fishing", "hill running",
              "foraging for mushrooms", "sketching outdoors", "long Sunday walks", "volunteering on footpaths"),
    "terrain": ("open moorland", "steep scree", "boggy ground", "a rocky ridge", "ancient oak woods", "sand dunes",
                "a narrow gorge", "heather and bracken", "limestone pavement", "a shingle beach", "pine forest",
                "rolling farmland", "a grassy saddle", "slippery boulders", "muddy bridleways", "chalk downland"),
    "job": (
            "a postman", "a nurse", "a teacher", "a farmer", "a gardener", "a plumber", "a vet",
            "a firefighter", "a student", "a retired engineer", "a dog walker", "a forester", "a park ranger",
            "a surveyor", "a bus driver", "a chef", "a paramedic", "a photographer", "an electrician",
            "a carpenter", "a shepherd", "an ecologist", "an archaeologist", "a landscaper", "a lifeguard",
            "a courier", "a baker", "a librarian", "a midwife", "a geologist", "a roofer", "a scout leader",
            "a groundskeeper", "a delivery driver", "a mountain guide", "a river warden"),
    "plant": ("bluebells", "wild garlic", "foxgloves", "purple heather", "gorse", "cotton grass", "primroses",
              "orchids", "sea pinks", "bilberries", "blackberries", "rowan berries", "meadowsweet", "ferns",
              "wood anemones", "cowslips", "thistles", "honeysuckle", "bog myrtle", "sloes"),
    "bird": ("a buzzard", "a kestrel", "a pair of ravens", "curlews", "a dipper", "oystercatchers", "a woodpecker",
             "a peregrine", "lapwings", "a barn owl", "a wren", "skylarks", "redstarts", "a cuckoo", "stonechats",
             "a golden eagle", "red kites", "sandpipers", "a heron", "goldfinches"),
    "feature": ("a ruined chapel", "an old packhorse bridge", "a standing stone", "a waterfall", "a hidden tarn",
                "a drystone wall", "a disused quarry", "a lighthouse", "a stone circle", "a bothy", "a lime kiln",
                "an iron-age fort", "a sea arch", "a trig point", "a collapsed mine shaft", "a shepherd's hut",
                "a wooden footbridge", "a lonely farmhouse", "a windswept summit cairn", "a shingle spit"),
    "miles": ("six", "eight", "ten", "twelve", "fifteen", "twenty"),
    "nights": ("two", "three", "four", "five", "six"),
    "hello": ("Hi", "Hello", "Hi there", "Good morning", "Good afternoon", "Hey", "Hello again"),
    "thanks": ("Thanks", "Thank you", "Many thanks", "Thanks so much", "Cheers",
               "Thanks in advance", "Thanks for your help"),
    "signoff": ("Best wishes", "Kind regards", "Happy trails", "All the best", "Warm regards",
                "See you outdoors", "Thanks again"),
    "very": ("really", "very", "genuinely", "properly", "seriously", "remarkably", "surprisingly"),
    "good": ("good", "great", "excellent", "brilliant", "superb", "solid", "lovely", "impressive"),
    "bad": ("poor", "disappointing", "flimsy", "shoddy", "frustrating", "underwhelming"),
    "a_good": ("a good", "a great", "an excellent", "a brilliant", "a superb", "a solid", "a lovely", "an impressive"),
    "a_bad": ("a poor", "a disappointing", "a flimsy", "a shoddy", "a frustrating", "an underwhelming"),
    "soon": ("soon", "shortly", "as soon as we can", "within a day or two", "very soon"),
    "check": ("Let me check that for you.", "One moment while I look that up.",
              "I can help with that.", "Good question.", "Happy to help with that.",
              "Let me have a look.", "Sure, one second.", "Of course."),
    "anything": ("Is there anything else I can help with?", "Can I help with anything else?",
                 "Anything else I can do for you today?", "Is there anything else you need?",
                 "Let me know if there is anything else."),
    "bye_customer": ("Thanks, that's all.", "Great, thanks for your help.", "Perfect, thank you!",
                     "That's everything, thanks.", "Brilliant, cheers.", "Thanks, bye.",
                     "Lovely, thank you so much.", "No, that's all for now. Thanks!"),
    "bye_agent": ("You're welcome! Have a great day.", "Glad I could help. Enjoy your trip!",
                  "My pleasure. Happy trails!", "Thanks for chatting with us. Take care.",
                  "Any time. Have a lovely weekend.", "You're welcome. Enjoy the outdoors!"),
}


# ----------------------------------------------------------------------------- facts in text
# A document with known facts is a list of paragraphs, each (joiner, [(sentence, {key: value})]).
# `_assemble` joins them and records where each fact's value sits, for extractive QA.

Paragraph = tuple[str, list[tuple[str, dict[str, str]]]]

_CAT_PLURAL = {"bags": "bags", "tents": "tents and shelters", "cookware": "pots and stoves",
               "lighting": "lights", "clothing": "layers", "footwear": "boots and shoes"}
_ADJECTIVES = ("hard-wearing", "lightweight", "versatile", "dependable", "no-nonsense",
               "comfortable", "well-made", "practical", "rugged", "compact", "good-looking",
               "simple", "thoughtfully designed", "tough", "easy-going", "reliable")


def _values(world: World) -> dict[str, str]:
    """Policy facts as they are written in sentences ("30 days", "$4.99", "2 hours")."""
    p = world.policies

    def n(key: str, unit: str) -> str:
        return f"{p[key]} {unit}" if p[key] != "1" else f"1 {unit[:-1]}"

    return {
        "return_window_days": n("return_window_days", "days"),
        "refund_days": n("refund_days", "business days"),
        "shipping_fee": p["shipping_fee"], "free_shipping_threshold": p["free_shipping_threshold"],
        "standard_delivery": p["standard_delivery"], "express_fee": p["express_fee"],
        "express_delivery": p["express_delivery"], "support_hours": p["support_hours"],
        "support_days": p["support_days"], "support_email": p["support_email"],
        "cancel_window_hours": n("cancel_window_hours", "hours"),
        "price_match_days": n("price_match_days", "days"), "repair_days": n("repair_days", "days"),
        "loyalty_scheme": p["loyalty_scheme"], "loyalty_points": n("loyalty_points", "points"),
        "student_discount": p["student_discount"], "gift_card_years": n("gift_card_years", "years"),
    }


def _product_values(p: Product) -> dict[str, str]:
    return {"price": _money(p.price), "colour": p.colour, "material": p.material,
            "warranty": _years(p.warranty_years), "sku": p.sku}


# topic -> (titles, [(fact keys, templates)]); a sentence with no keys states no fact.
_POLICY_TOPICS: dict[str, tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]]] = {
    "returns": (("Returns policy", "Returning an item", "Returns and refunds", "How returns work"), (
        ((), ("[Not quite right?|Changed your mind?|Wrong size?] [No problem.|That happens.|We understand.]",
              "We want you to love your gear[, and if you don't, we make sending it back easy|].")),
        (("return_window_days",), (
            "You can return any unused item within {return_window_days} of delivery[ for a full refund|].",
            "Send it back within {return_window_days} of delivery and we will refund you in full.",
            "Our return window is {return_window_days}, counted from the day your parcel arrives.",
            "Items may be returned up to {return_window_days} after delivery, as long as they are unused.",
        )),
        ((), ("Start a return from the Orders page of your account, or ask our support team for a label.",
              "Please include the return slip from your parcel[ so we can match it to your order|].",
              "Sale items can be returned in exactly the same way as full-price items.",
              "Gear that has been used outdoors can only be returned if it is faulty.")),
        (("refund_days",), (
            "Once your return reaches us, we process the refund within {refund_days}.",
            "Refunds go back to the original payment method within {refund_days} of the parcel arriving.",
            "Expect your money within {refund_days} after we receive the return.",
        )),
        ((), ("Most returns are checked within a day of reaching our warehouse.",
              "You will get an email as soon as we have checked your return.",
              "Please clean off any mud before sending footwear or tents back.")),
        ((), ("If you would rather have a different size or colour, we will swap it free of charge.",
              "Faulty items are covered by our warranty, which is separate from the return window.")),
    )),
    "shipping": (("Shipping and delivery", "Delivery information", "How we ship", "Shipping policy"), (
        (("shipping_fee",), (
            "Standard shipping costs {shipping_fee} per order.",
            "We charge a flat {shipping_fee} for standard delivery[, whatever the size of your order|].",
            "Standard delivery is {shipping_fee} for any order.",
        )),
        (("free_shipping_threshold",), (
            "Orders over {free_shipping_threshold} ship free.",
            "Spend more than {free_shipping_threshold} and standard shipping is on us.",
            "Shipping is free on every order over {free_shipping_threshold}.",
        )),
        (("standard_delivery",), (
            "Standard parcels arrive in {standard_delivery}.",
            "Standard delivery takes {standard_delivery}.",
            "Most standard orders reach you within {standard_delivery}.",
        )),
        ((), ("Orders placed before noon usually leave our warehouse the same day.",
              "Every parcel comes with a tracking link, sent by email when it ships.",
              "We ship from our distribution centres in {warehouses}.",
              "We pack everything in recycled cardboard with paper tape.")),
        ((), ("Large items such as family tents may arrive in two parcels.",
              "If you are out, the driver will leave your parcel in a safe place or with a neighbour.",
              "You can change your delivery day from the tracking page.")),
        (("express_fee", "express_delivery"), (
            "Need it sooner? Express shipping costs {express_fee} and arrives in {express_delivery}.",
            "Express delivery is {express_fee} and takes {express_delivery}.",
            "For {express_fee} you can choose express shipping, which arrives in {express_delivery}.",
        )),
    )),
    "support": (("Contact us", "Customer support", "Getting help", "Talk to our team"), (
        ((), ("Our support team is made up of people who walk, camp and cook outdoors themselves.",
              "We are here to help with orders, returns, repairs and product advice.",
              "Questions about an order, a product or a repair? Our team is here to help.")),
        (("support_hours", "support_days"), (
            "Our support team is available {support_hours}, {support_days}.",
            "You can reach us {support_hours}, {support_days}, by live chat or phone.",
            "Support is open {support_days}, {support_hours}.",
        )),
        (("support_email",), (
            "You can email us at {support_email} at any time.",
            "Write to {support_email} and we will reply within one working day.",
            "Our email address is {support_email}.",
        )),
        ((), ("Please have your order number ready; it starts with FH and is in your confirmation email.",
              "Outside opening hours, leave a message and we will get back to you the next working day.",
              "Live chat is on every page of our website, in the bottom corner.")),
        ((), ("Our shop staff can also help with most questions in person.",
              "For repairs, a photo of the problem helps us answer faster.",
              "We read every message, and we answer most within a few hours.")),
    )),
    "warranty": (("Warranty and repairs", "Our warranty", "Repairs and guarantees"), (
        ((), ("Every {short} product carries a warranty against faults in materials and workmanship.",
              "We stand behind everything we sell with a warranty against faults.")),
        ((), ("The length of the warranty depends on the product and is listed on each product page.",
              "Warranty periods range from {warranty_range}, depending on the product.")),
        (("repair_days",), (
            "Repairs usually take {repair_days} from the day we receive the item.",
            "Our repair team aims to send mended gear back within {repair_days}.",
            "Most repairs are finished within {repair_days}.",
        )),
        ((), ("Damage from accidents or normal wear is not covered, but we can often repair it for a small fee.",
              "If a fault appears, contact our support team with your order number and a photo.",
              "We would always rather mend a piece of gear than see it thrown away.")),
        ((), ("You do not need a receipt; your order number or the card you paid with is enough.",
              "If we cannot repair an item under warranty, we replace it or refund you.",
              "Our repair workshop sits next to our head office, and you are welcome to visit.")),
    )),
    "cancellations": (("Cancelling an order", "Order cancellations", "Changing or cancelling an order"), (
        (("cancel_window_hours",), (
            "You can cancel an order within {cancel_window_hours} of placing it.",
            "Orders can be cancelled free of charge up to {cancel_window_hours} after they are placed.",
            "There is a {cancel_window_hours} window after checkout in which you can cancel.",
        )),
        ((), ("After that, your parcel has usually been packed, but you can still return it once it arrives.",
              "To cancel, open the order in your account and choose Cancel order, or contact support.",
              "If you cancel in time, the payment is released straight away.")),
        ((), ("You can change the delivery address in the same window.",
              "We cannot change an order once it has left the warehouse.")),
        ((), ("Cancelled orders are refunded in full, including any shipping fee.",
              "Pre-orders can be cancelled at any time before they ship.")),
    )),
    "payments": (("Payments and prices", "Paying for your order", "Prices and discounts"), (
        ((), ("We accept all major cards, gift cards and bank transfer.",
              "Your card is charged when your order ships, not when you place it.",
              "All prices on our website include tax.")),
        (("price_match_days",), (
            "If you find the same item cheaper elsewhere within {price_match_days} of buying it, we refund the difference.",
            "Our price match promise lasts {price_match_days} from the date of purchase.",
        )),
        (("student_discount",), (
            "Students get {student_discount} off full-price items with a valid student card.",
            "We offer a {student_discount} student discount on full-price gear.",
        )),
        (("gift_card_years",), (
            "Gift cards are valid for {gift_card_years} from the date of purchase.",
            "A {short} gift card can be spent for up to {gift_card_years}.",
        )),
    )),
    "loyalty": (("The {loyalty_scheme}", "Our loyalty scheme", "Rewards for members"), (
        (("loyalty_scheme",), (
            "Our loyalty scheme, the {loyalty_scheme}, is free to join.",
            "Join the {loyalty_scheme} for free when you create an account.",
        )),
        (("loyalty_points",), (
            "Members earn {loyalty_points} for every dollar they spend.",
            "Every dollar you spend earns {loyalty_points} in the {loyalty_scheme}.",
        )),
        ((), ("Points can be spent on anything in our shops or online.",
              "Members also hear about new gear before anyone else.",
              "Points never expire while your account is active.")),
        ((), ("Members are invited to our repair evenings and guided walks.",
              "Your points balance is shown on the Account page.")),
    )),
}


def _slots(world: World) -> dict[str, str]:
    """Slots every template about the world may use: policy values and company facts."""
    years = sorted({p.warranty_years for p in world.products})
    return {
        **_values(world), "company": world.company, "short": SHORT,
        "warehouses": _join(world.warehouses), "hq": world.headquarters,
        "founded": str(world.founded),
        "warranty_range": f"{_NUMBER_WORDS[years[0]]} to {_NUMBER_WORDS[years[-1]]} years",
    }


def _annotated(sentence: str, slots: dict[str, str], keys: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    return sentence, {k: slots[k] for k in keys if slots[k] in sentence}


def _policy_paragraphs(world: World, rng: random.Random, topic: str, p_fact: float = 0.9) -> list[Paragraph]:
    """One policy section: a title paragraph and a body whose fact sentences are annotated."""
    titles, specs = _POLICY_TOPICS[topic]
    slots = _slots(world)
    body = []
    for keys, templates in specs:
        if rng.random() < (p_fact if keys else 0.8):
            body.append(_annotated(say(rng, templates, **slots), slots, keys))
    if not body:
        keys, templates = specs[1]
        body.append(_annotated(say(rng, templates, **slots), slots, keys))
    return [("", [(say(rng, titles, **slots), {})]), (" ", body)]


_PRODUCT_SPECS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ("The {name} is {a_adj_noun} [built|designed|made] for {use}.",
          "Meet the {name}, our {adj} {noun} for {use}.",
          "Whether you are heading out for {use} or {use2}, the {name} is ready when you are.",
          "The {name} is {a_adj_noun} that [handles|copes with|is at home on] {use} and {use2}.",
          "Designed in our {hq} workshop, the {name} is {a_adj_noun} for people who would rather be outside.",
          "Simple, sturdy and easy to live with, the {name} is our answer to {use}.",
          "From {use} to {use2}, the {name} takes it all in its stride.",
          "Every detail of the {name} was argued over by people who actually use it.")),
    ((), ("It has been one of our [best-selling|most popular|most reviewed] {cat} [since it launched|for years].",
          "It is one of our [best-selling|most popular] {cat} this season.",
          "We [designed|tested] it [with|alongside] our [shop staff|customers|repair team] over [two|three] seasons.",
          "[It is|It's] the {noun} our staff [reach for|take] on their own trips.", "")),
    (("material", "colour"), (
        "It is made of {material} and comes in {colour}.",
        "[Made from|Built from|Cut from] {material}, it [comes in|is finished in|is available in] {colour}.",
        "We make the {name} from {material}[, which keeps the weight down|, which stands up to hard use|, which is easy to repair|], and it comes in {colour}.",
        "The {name} comes in {colour} and is made of {material}.")),
    ((), ("It has {features}.", "Highlights include {features}.",
          "Thoughtful details include {features}.", "You get {features}.")),
    (("price",), ("The {name} [costs|sells for|is priced at] {price}.",
                  "At {price}, it is one of our [best-value|most popular] {cat}.",
                  "It is yours for {price}.", "[Price|Our price]: {price}.")),
    (("warranty",), ("Like all our gear it carries a warranty, in this case for {warranty}.",
                     "The {name} carries a warranty of {warranty}.",
                     "It is covered by our warranty for {warranty}.",
                     "We guarantee it against faults for {warranty}.")),
    (("sku",), ("Product code: {sku}.", "SKU: {sku}.",
                "Quote {sku} if you call us about this item.")),
    (("free_shipping_threshold", "return_window_days"), (
        "Orders over {free_shipping_threshold} ship free, and you can return it within {return_window_days} of delivery.",
        "Free shipping over {free_shipping_threshold}. Returns accepted within {return_window_days}.",
        "Not sure? You have {return_window_days} to return it, and shipping is free over {free_shipping_threshold}.",
        "")),
)


_CARE = {
    "bags": ("Empty it after every trip and let it dry with the pockets open.", "Brush off dried mud before you wash it.",
             "Hand wash it in cool water with a mild soap.", "Never put it in a tumble dryer.",
             "A little wax on the zips keeps them running smoothly."),
    "tents": ("Always dry it fully before you store it.", "Keep the poles and pegs in their own bag.",
              "Pitch it once in the garden before your first trip.", "Store it loosely in a cool, dry cupboard.",
              "Sponge off bird droppings and tree sap as soon as you can."),
    "cookware": ("Wash it with warm water and a soft sponge, never a scourer.", "Dry it before packing it away.",
                 "Let it cool before you pack it.", "A drop of oil after washing keeps it in good shape.",
                 "Keep it in its bag so it does not scratch other kit."),
    "lighting": ("Charge it fully before every trip.", "Lock the switch before you pack it.",
                 "Use the lowest setting you can; the battery lasts far longer.", "Wipe it dry after a wet walk.",
                 "Top up the charge every few months when it is not in use."),
    "clothing": ("Wash it with a gentle cleaner, not ordinary detergent.", "Dry it flat and away from direct heat.",
                 "Close every zip before washing.", "Reproof it once a season to keep the rain out.",
                 "Store it clean and dry, on a hanger rather than in a stuff sack."),
    "footwear": ("Clean off mud after each walk and let them dry slowly.", "Never dry them next to a fire or radiator.",
                 "Stuff them with newspaper to help them dry.", "Treat leather once a season with a good wax.",
                 "Take the insoles out after a wet day."),
}
_PRODUCT_EXTRAS = (
    "[Ideal|Perfect|Great] for {use}, {use2} and everything in between.",
    "If you spend a lot of time outdoors, it will soon become your favourite {noun}.",
    "[It is|It's] the kind of {noun} you buy once and keep for years.",
    "We think it is the best {noun} we have made so far.",
)


def _product_extras(world: World, rng: random.Random, p: Product, s: dict[str, str]) -> list[Paragraph]:
    """Paragraphs without facts: who it is for, what a customer said, how to care for it."""
    out: list[Paragraph] = []
    if rng.random() < 0.6:
        quote = _fill(rng, rng.choice(_praise(p)), **s)
        out.append((" ", [(say(rng, _PRODUCT_EXTRAS, **s), {}), (say(rng, (
            "\"{q},\" says {who} from {town}.", "One customer from {town} told us that {q}.",
            "In the words of one reviewer, {q}."), q=quote, who=rng.choice(world.customers),
            town=rng.choice(_TOWNS)), {})]))
    if rng.random() < 0.6:
        care: list[tuple[str, dict[str, str]]] = [(say(rng, ("Caring for it:", "Care:", "Looking after your {noun}:", "Care tips:"), **s), {})]
        out.append((" ", care + [(t, {}) for t in rng.sample(_CARE[p.category], rng.randint(2, 3))]))
    return out


def _product_slots(world: World, p: Product, rng: random.Random) -> dict[str, str]:
    uses = rng.sample(_CATALOGUE[p.category]["uses"], 2)
    adj = rng.choice(_ADJECTIVES)
    return {**_slots(world), **_product_values(p), "name": p.name, "noun": p.noun, "a_noun": _a(p.noun),
            "a_colour_noun": _a(f"{p.colour} {p.noun}"),
            "a_adj_noun": _a(f"{adj} {p.noun}"), "adj": adj, "use": uses[0], "use2": uses[1],
            "cat": _CAT_PLURAL[p.category], "features": _join(p.features)}


def _product_paragraphs(world: World, rng: random.Random, p: Product) -> list[Paragraph]:
    """A product page; fact keys are "<fact>:<product name>"."""
    s = _product_slots(world, p, rng)
    title = say(rng, ("{name}", "{name} | {title}", "{name} | {company}", "{title}: {name}"),
                title=_CATEGORY_TITLE[p.category], **s)
    own = _product_values(p)
    prose = []
    for keys, templates in _PRODUCT_SPECS:
        text, facts = _annotated(say(rng, templates, **s), s, keys)
        if text:
            prose.append((text, {f"{k}:{p.name}" if k in own else k: v for k, v in facts.items()}))
    paragraphs: list[Paragraph] = [("", [(title, {})])]
    extras = _product_extras(world, rng, p, s)
    if rng.random() < 0.4:  # a spec block instead of some of the prose
        prose = [x for x in prose if not any(k.split(":")[0] in ("price", "warranty", "sku") for k in x[1])]
        block = [(f"{label}: {s[k]}", {f"{k}:{p.name}": s[k]}) for label, k in (
            ("Price", "price"), ("Colour", "colour"), ("Material", "material"),
            ("Warranty", "warranty"), ("SKU", "sku")) if rng.random() < 0.9]
        if rng.random() < 0.5:
            block.insert(0, ("Specifications", {}))
        paragraphs += [(" ", prose[:4]), *extras, ("\n", block), (" ", prose[4:])]
    else:
        cut = rng.randint(2, 4)
        paragraphs += [(" ", prose[:cut]), (" ", prose[cut:]), *extras]
    return [x for x in paragraphs if x[1]]


def _assemble(paragraphs: list[Paragraph]) -> tuple[str, list[tuple[str, str, int]]]:
    """Paragraphs -> text and (key, value, start) for every annotated fact."""
    out: list[str] = []
    facts: list[tuple[str, str, int]] = []
    pos = 0
    for i, (joiner, sentences) in enumerate(paragraphs):
        if i:
            out.append("\n\n")
            pos += 2
        for j, (sentence, found) in enumerate(sentences):
            if j:
                out.append(joiner)
                pos += len(joiner)
            for key, value in found.items():
                facts.append((key, value, pos + sentence.index(value)))
            out.append(sentence)
            pos += len(sentence)
    return "".join(out), facts


# ----------------------------------------------------------------------------- reviews
# Clauses (lower case, no full stop) that praise or fault one aspect: per category, for any
# product in it, and per product type, for that type only.

_PRAISE = {
    "bags": ("the zips run smoothly and have never snagged", "there is a pocket for everything",
             "the fabric shrugged off a whole day of {weather}", "it swallows a surprising amount of kit",
             "it still looks new after months of daily use", "the stitching looks built to last",
             "it is light but feels tough", "the buckles are easy to use with gloves on"),
    "tents": ("it stayed bone dry through a night of {weather}", "it packs down smaller than I expected",
              "it is light enough to carry all day", "setting it up is simple even in the dark",
              "the fabric feels tougher than I expected", "it barely moved in {weather}",
              "everything fits back in the bag easily"),
    "cookware": ("it feels solid without being heavy", "it is easy to clean", "it packs neatly in my rucksack",
                 "it has survived being dropped on rocks more than once", "it looks as good as the day it arrived",
                 "the finish has not scratched at all"),
    "lighting": ("the battery lasts for days between charges", "it charges quickly from a power bank",
                 "it survived a full night of {weather}", "the switch is easy to find with cold fingers",
                 "it is small enough to live in a coat pocket", "it is brighter than I expected"),
    "clothing": ("the fit is spot on, with room for a layer underneath", "it washes well and has not lost its shape",
                 "the colour is even nicer in person", "it is comfortable all day", "the stitching is neat and tidy",
                 "it feels like it will last for years"),
    "footwear": ("the fit was comfortable straight out of the box", "there was no breaking-in period at all",
                 "my toes have plenty of room", "they still look smart after months of use",
                 "the soles show almost no wear after a summer", "the grip is reassuring on slippery ground"),
}
_FAULTS = {
    "bags": ("the zips started sticking after a few weeks", "water got in through the seams in light rain",
             "it is much smaller inside than the photos suggest", "the lining tore on the first trip",
             "the fabric marks and scuffs very easily", "the bottom seam split under a modest load",
             "a buckle snapped in the cold", "the straps slip loose as I walk"),
    "tents": ("the seams leaked during {weather}", "it took us nearly an hour to set up",
              "it is much heavier than the listing suggests", "the bag is so tight that packing it away is a battle",
              "the fabric ripped on a branch", "the stitching came loose at one corner"),
    "cookware": ("it dented the first time I dropped it", "it rattles around in my pack", "the finish scratched within days",
                 "it is heavier than it looks", "a part came loose within a month", "it feels cheaper than the price suggests"),
    "lighting": ("the battery dies after a couple of hours", "the switch turned on by itself in my bag",
                 "it stopped charging after a month", "water got inside after light rain",
                 "the light flickers on the lowest setting", "the charging port cover fell off",
                 "the modes are confusing to cycle through"),
    "clothing": ("the sizing is way off, so I had to swap it", "the zip keeps catching on the fabric",
                 "it pilled after two washes", "the seams started coming apart at the shoulders",
                 "it shrank in the wash despite following the label", "the colour faded after a few washes"),
    "footwear": ("they gave me blisters on every walk", "the heel rubs however I wear them",
                 "the toe box is too narrow for my feet", "the insole went flat within weeks",
                 "they squeak with every step", "the sizing runs at least half a size small"),
}
_TYPE_CLAUSES = {  # type -> (praise, faults)
    "Daypack": (("the side pockets hold a full water bottle securely", "the back panel keeps air moving on warm days",
                 "my laptop fits with room to spare"),
                ("the side pockets are too shallow to hold a bottle", "the back panel gets hot and sweaty on warm days")),
    "Rucksack": (("the hip belt takes the weight off my shoulders", "the back length adjusts easily"),
                 ("the hip belt digs into my sides", "one of the shoulder straps began to fray")),
    "Duffel": (("it fits in an overhead locker with room to spare", "muddy boots stay well away from clean clothes"),
               ("the backpack straps are too thin to carry it far", "the handles started to tear at the stitching")),
    "Sling Bag": (("it sits flat against my back when I cycle", "I can swing it round and grab my phone in seconds"),
                  ("the strap cuts into my shoulder", "it swings around when I walk fast")),
    "Travel Pack": (("it opens like a suitcase, so packing is easy", "the straps tuck away neatly at the airport"),
                    ("it is too big for most cabin bag limits", "the zip on the main compartment split")),
    "Hip Pack": (("it holds my phone, keys and a snack without bouncing", "the buckle is easy to open one-handed"),
                 ("it bounces around when I run", "the belt slides down over my hips")),
    "Tent": (("there is plenty of headroom for two adults", "the porch easily takes boots and bags",
              "the vents kept condensation to a minimum"),
             ("a pole cracked on the second night", "condensation dripped on us all night",
              "it is far too cramped for two people", "a guy line snapped in {weather}")),
    "Tarp": (("it pitches a dozen different ways with walking poles", "it kept the rain off our whole camp kitchen"),
             ("the tie-out points started to tear", "it sags badly once the fabric gets wet")),
    "Bivy": (("I stayed dry and warm on an open hillside", "the mesh window kept the midges off my face"),
             ("condensation soaked my sleeping bag", "it feels like sleeping in a bin bag")),
    "Hammock": (("I slept better in it than in my own bed", "the straps went round the trees in a minute"),
                ("the straps stretched and I sank to the ground", "the bug net tore on the second night")),
    "Canopy": (("it gave us shade all afternoon at the beach", "the legs lock firmly at every height"),
               ("one of the legs bent in a gust", "it blew over even with every peg in")),
    "Family Tent": (("the bedrooms are dark enough for the kids to sleep in", "we can all stand up inside"),
                    ("it takes two adults a good hour to pitch", "water pooled on the roof of the porch")),
    "Camp Stove": (("it boils water in a few minutes even in the wind", "it lights first time, every time",
                    "the flame turns right down for simmering"),
                   ("the igniter stopped working within a month", "it struggles in even a light breeze",
                    "the pot supports wobble")),
    "Kettle": (("it pours without dribbling", "it boils quickly on a small stove"),
               ("the spout dribbles down the side", "the handle gets far too hot")),
    "Cook Set": (("everything nests together neatly", "it is the right size for a meal for two",
                  "the lids fit snugly and do not rattle"),
                 ("the coating started peeling after a few uses", "the pots are too small to cook for more than one",
                  "the handle wobbles")),
    "Skillet": (("it heats evenly, so nothing burns in the middle", "eggs slide right off once it is seasoned"),
                ("food sticks to the base however much oil I use", "the base warped on a hot flame",
                 "it started rusting after one wet trip")),
    "Insulated Mug": (("my tea was still hot hours later", "the lid does not leak even upside down"),
                      ("the lid leaks when it is in my bag", "coffee goes cold far too quickly")),
    "Water Bottle": (("water stays cold all day in the sun", "the lid has never leaked in my bag"),
                     ("everything tastes metallic no matter how often I wash it", "the lid leaks when it lies on its side")),
    "Headlamp": (("the strap is comfortable even over a hat", "the beam lights the whole path ahead",
                  "the red light mode is perfect in the tent"),
                 ("the strap lost its stretch within weeks", "the beam is far too dim for walking at night",
                  "it slides down my forehead when I run")),
    "Lantern": (("it gives a warm, soft light that fills the tent", "it hangs neatly from the tent roof"),
                ("the hook snapped the first time I hung it up", "the light is harsh and blue")),
    "Torch": (("the beam reaches right across the field", "it still works after being dropped in a stream"),
              ("the beam is patchy, with a dark ring in the middle", "it rolls off every table")),
    "Clip Light": (("the clip holds on to anything", "it is perfect clipped to a rucksack strap"),
                   ("the clip is too weak to hold on", "it fell off my bag on the first walk")),
    "Solar Light": (("a sunny afternoon charges it for the whole evening", "it kept my phone topped up all weekend"),
                    ("it barely charges unless the sun is blazing", "the solar panel cracked in my bag")),
    "Reading Light": (("the dimmest setting is just right for reading", "the neck bends exactly where I want it"),
                      ("the neck droops after a few minutes", "even the lowest setting is too bright for reading")),
    "Rain Jacket": (("it kept me dry through {weather}", "the hood stays put in strong wind", "it breathes well on steep climbs"),
                    ("it wetted out after an hour of {weather}", "the hood blows off in the slightest breeze",
                     "it rustles loudly with every step")),
    "Fleece": (("it is warm without being bulky", "it is soft and cosy on cold evenings"),
               ("it lets the wind straight through", "it sheds fluff on everything")),
    "Down Vest": (("it keeps my core warm without overheating", "it packs down to the size of an apple"),
                  ("feathers keep poking through the fabric", "it is useless once it gets damp")),
    "Softshell": (("it stretches with me on scrambles", "it shrugs off light showers and wind"),
                  ("it is not nearly as waterproof as I hoped", "it makes me sweat on even gentle climbs")),
    "Base Layer": (("it is soft against the skin and never itchy", "it does not smell even after three days"),
                   ("it is itchy around the neck", "it went see-through after a few washes")),
    "Parka": (("it kept me warm on the coldest morning of the year", "the hood is deep enough to shut out {weather}"),
              ("it is not nearly as warm as I expected", "it is too bulky to wear under a rucksack")),
    "Hiking Boot": (("my feet stayed dry through {weather}", "the ankle support saved me on rough ground",
                     "the laces stay tied all day"),
                    ("the sole started peeling away from the upper", "they took a month to break in",
                     "my feet were soaked within an hour of {weather}")),
    "Trail Shoe": (("they feel light and fast on the trail", "the grip on wet rock is excellent"),
                   ("the mesh tore after a few runs", "the grip is lethal on wet rock")),
    "Sandal": (("the straps do not rub even on long days", "they dry in minutes after a river crossing"),
               ("the straps rub my heels raw", "the sole is too thin for stony paths")),
    "Camp Slipper": (("they are perfect for padding around the campsite", "they pack flat in my rucksack"),
                     ("the sole wore through in weeks", "my feet get sweaty in them")),
    "Mid Boot": (("they are light enough for all-day walks", "my feet stayed dry through {weather}"),
                 ("the laces keep coming undone", "the stitching split along the side")),
    "Wellington": (("my feet stayed dry wading through puddles", "they slip on and off easily"),
                   ("they cracked at the ankle after one winter", "my feet freeze in them")),
}


def _praise(p: Product) -> tuple[str, ...]:
    return _PRAISE[p.category] + _TYPE_CLAUSES[p.kind][0] * 2  # type-specific clauses come up more often


def _faults(p: Product) -> tuple[str, ...]:
    return _FAULTS[p.category] + _TYPE_CLAUSES[p.kind][1] * 2


_OPENERS = (
    "I bought the {name} for {trip}.", "I picked up the {name} {when}, ahead of {trip}.",
    "{Relative} gave me the {name} as a [birthday|Christmas|retirement|leaving] present.",
    "I have been using the {name} for {span} now.", "I needed a new {noun} for {trip} and chose the {name}.",
    "This is my [second|third|fourth] order from {short}, and this time I went for the {name}.",
    "[After a lot of research|On a friend's advice|On a whim|After reading the reviews here], I ordered the {name}.",
    "I replaced my old {noun} with the {name} {when}.", "We took the {name} on {trip}.",
    "Bought the {name} in the {store} shop {when}.", "I use the {name} mainly for {use}.",
    "My old {noun} finally gave up, so I tried the {name}.",
    "I spotted the {name} in the sale and took a chance on it.",
    "After my last {noun} let me down on {trip}, I wanted something sturdier and chose the {name}.",
    "The staff in the {store} shop suggested the {name} when I described my plans.",
    "I had my eye on the {name} for months before I finally ordered it.",
    "I bought the {name} as a treat after finishing {trip}.",
)
_STORY = (
    "We spent {nights} nights at {place}[, and it rained for most of them|, and the weather was kind to us|, with one very wild night].",
    "The forecast promised sunshine, but we got {weather} instead.",
    "[{relative} and I|We|Our group] walked about {miles} miles a day over {terrain}.",
    "Our route took us across {terrain} and up onto {place}.",
    "We cooked {food} every evening[ and watched the sun go down|, which tasted twice as good outdoors|].",
    "On the second morning we woke to {wildlife}.", "I am not a serious hiker, just someone who enjoys {hobby}.",
    "It has been with me on [every trip|most trips] since, from {place} to the coast.",
    "The path was mostly {terrain}, so it got a proper test.", "We had {weather} on the first day and clear skies after that.",
    "For context, I have been walking and camping for [years|over twenty years|a couple of seasons].",
    "I mostly use it for {hobby}, with the odd longer trip.",
    "As {job}, I [am on my feet all day|spend most of my time outside|need kit that lasts|am hard on my gear].",
    "I work as {job}, so it gets used every day, not just at weekends.",
    "We passed {feature} on the way and stopped for {food}.",
    "The hillsides were covered in {plant}, and we saw {bird} overhead.",
    "We watched {bird} over {place} while the kettle boiled.",
    "We pitched up in a sheltered hollow just below {place}.",
    "The river was running high after days of {weather}, so we took the long way round.",
    "Our tea stop was beside {feature}, out of the wind.", "The midges were out in force, so we kept moving.",
    "It was my first night outdoors since I was a teenager.",
    "The campsite warden lent us a mallet because the ground was rock hard.",
    "We caught the last ferry back to the mainland, soaked but happy.",
    "My grandchildren came along and tested everything to destruction.",
    "We [rented|borrowed] a little cottage near {place} and walked from the door every day.",
    "Most of my walks are short, but I did take it up to {feature} above {place}.",
)
_GOOD_FRAMES = ("{c}.", "{c}.", "[I love that|I like that|What I like most is that|I was pleased to find that|Happily,] {c}.",
                "[Best of all|On top of that|Also|What's more], {c}.")
_BAD_FRAMES = ("{c}.", "{c}.", "[Unfortunately|Sadly|Annoyingly|To my surprise], {c}.",
               "[The problem is that|My main gripe is that|I was disappointed that|Worse,] {c}.")
_MIXED_FRAMES = ("{g}, but {b}.", "Although {g}, {b}.", "{b}, although {g}.",
                 "On the plus side, {g}; on the other hand, {b}.", "{g}. [Then again|On the other hand|Still], {b}.")
_GENERIC = {
    "great": ("It is [easily|honestly|quite simply] the best {noun} I have owned.", "I am {very} pleased with it.",
              "It has [exceeded|gone beyond] my expectations.", "Worth every penny.",
              "I could not be happier with it.", "It has never let me down.", "I can't fault it.",
              "Brilliant piece of kit.", "I have already ordered another for {relative}.",
              "Honestly, I have no complaints at all.", "Ten out of ten from me.",
              "Not a single thing I would change.", "Easily the best money I have spent this year.",
              "I wish I had bought one years ago.", "It makes every trip a little more comfortable.",
              "Everyone in my group wants one now."),
    "good": ("Not bad at all, [actually|to be honest|for the price].", "I am happy with it overall.",
             "It does everything I need.", "{a_good} {noun} for the money.", "I would buy it again.",
             "No real complaints.", "It has held up well so far.", "It feels like it will last.",
             "I was not expecting much, but it has won me over.", "Pretty good, all things considered.",
             "It is a sensible, well-made {noun}.", "A few small niggles, but nothing serious.",
             "It has earned its place in my kit."),
    "mixed": ("It does the job, but nothing more.", "It is fine for the price.",
              "It is okay, though I expected a little more.", "Some things are good, some are not.",
              "It is neither great nor terrible.", "It is about what I expected.", "Decent, but not exceptional.",
              "I have mixed feelings about it.", "Not great, not terrible.", "It is nothing special, but it works.",
              "Average, really.", "It is a middle-of-the-road {noun}.", "I am still making up my mind about it.",
              "It works, but I am not excited about it.", "Good in some ways, annoying in others.",
              "Fine for occasional use, I would say."),
    "poor": ("I am [quite|rather|a bit] disappointed.", "It did not live up to the description.",
             "Not great, to be honest.", "I expected better from {short}.", "Not really worth the money.",
             "It is {a_bad} {noun} for the price.", "I probably would not buy it again.",
             "Not impressed so far.", "It feels cheaper than it should.", "I had hoped for a lot more.",
             "It is usable, but only just.", "I will be looking for something else next season."),
    "awful": ("I am {very} disappointed.", "It fell apart after [a few weeks|two trips|one weekend].",
              "Not worth the money at all.", "I would not buy it again.", "A complete waste of money.",
              "Honestly, it is the worst {noun} I have owned.", "It is going back [for a refund|this week].",
              "Nothing about it works as promised.", "I cannot believe how {bad} it is.",
              "Avoid this one.", "I regret buying it.", "Save your money.",
              "It ruined what should have been a lovely trip."),
}
_PRICE = {
    "up": ("For {price}, it is [excellent|great|very fair] value.", "At {price} it is a bargain.",
           "I paid {price} and would happily have paid more."),
    "level": ("At {price} it is [about right|fair enough|a little steep].", "For {price} I expected slightly more.",
              "It is reasonable value at {price}, I suppose."),
    "down": ("At {price} I expected [far|much|a lot] more.", "{price} is a lot to pay for this.",
             "I paid {price} and feel short-changed."),
}
_RECOMMEND = {
    "up": ("I would recommend it to anyone[ who walks in all weathers| heading out for {use}|].",
           "[Highly recommended|Recommended without hesitation|Strongly recommended].",
           "If you are on the fence, [go for it|buy it]."),
    "level": ("I would recommend it, with reservations.", "Worth a look if it is on sale.",
              "It might suit you better than it suits me."),
    "down": ("I cannot recommend it.", "I would steer clear.", "Look elsewhere.",
             "I would not recommend it[ to a friend| to anyone|]."),
}
_SERVICE = {
    "up": ("Delivery was quick and the parcel was well packed.", "It arrived in [two|three] days, nicely packed.",
           "The shop staff in {store} were {very} helpful."),
    "down": ("To make matters worse, delivery took nearly two weeks.",
             "Support were polite but could not do much.", "The parcel arrived battered."),
}
_STAR_PLAN = {  # stars -> (tone, praise count, fault count, mixed sentences, generic tones)
    5: ("up", 2, 0, 0, ("great", "great", "good")),
    4: ("up", 2, 1, 0, ("good", "great")),
    3: ("level", 1, 1, 1, ("mixed", "mixed")),
    2: ("down", 0, 2, 0, ("poor", "awful")),
    1: ("down", 0, 2, 0, ("awful", "awful", "poor")),
}


def _distinct(rng: random.Random, pool: tuple[str, ...], k: int) -> list[str]:
    """k different items of a pool that may hold repeats."""
    out: list[str] = []
    for x in rng.sample(pool, len(pool)):
        if x not in out:
            out.append(x)
    return out[:k]


def _review_lines(world: World, rng: random.Random, p: Product, stars: int) -> list[str]:
    """The body of a review of `p` with `stars` (1-5): a varied mix of cues, no explicit rating."""
    tone, n_good, n_bad, n_mixed, generic = _STAR_PLAN[stars]
    s = {**_product_slots(world, p, rng), "store": world.stores, "Relative": ("My partner", "My mum",
         "My brother", "A friend", "My daughter", "My husband", "My wife", "My son", "My sister")}
    praise = _distinct(rng, _praise(p), 4)
    faults = _distinct(rng, _faults(p), 4)
    n_good += rng.randint(0, 1) if stars >= 4 else 0
    n_bad += rng.randint(0, 1) if stars <= 2 else 0
    body = [say(rng, f, c=_fill(rng, c, **s)) for f, c in zip(rng.sample(_GOOD_FRAMES, n_good), praise, strict=False)]
    body += [say(rng, f, c=_fill(rng, c, **s)) for f, c in zip(rng.sample(_BAD_FRAMES, n_bad), faults, strict=False)]
    if stars == 4 and body and rng.random() < 0.6:  # the small complaint in a good review
        body[-1] = say(rng, ("The only downside is that {c}.", "My one complaint is that {c}.",
                             "If I had to pick a fault, {c}."), c=_fill(rng, faults[0], **s))
    for _ in range(n_mixed + rng.randint(0, 1) * (stars == 3)):
        body.append(say(rng, _MIXED_FRAMES, g=_fill(rng, praise.pop(), **s), b=_fill(rng, faults.pop(), **s)))
    body += [say(rng, _GENERIC[g], **s) for g in rng.sample(generic, rng.randint(1, 2))]
    rng.shuffle(body)
    if stars == 2 and rng.random() < 0.6:  # the one kind word in a bad review, never first
        body.insert(rng.randint(1, len(body)), say(rng, ("To be fair, {c}.", "{c}, I will give it that.",
                                                         "I will admit {c}."), c=_fill(rng, praise[2], **s)))
    lines = [say(rng, _OPENERS, **s)] if rng.random() < 0.85 else []
    lines += [say(rng, t, **s) for t in rng.sample(_STORY, rng.choice((0, 1, 1, 2)))]
    lines += body
    if rng.random() < 0.35:
        lines.append(say(rng, _PRICE[tone], **s))
    if rng.random() < 0.2 and tone != "level":
        lines.append(say(rng, _SERVICE[tone], **s))
    if rng.random() < 0.6:
        lines.append(say(rng, _RECOMMEND[tone], **s))
    return lines


_REVIEW_TITLES = {
    5: ("Superb", "Love it", "Best {noun} I have owned", "Five stars", "Brilliant", "Could not be happier"),
    4: ("Very good", "Really pleased", "Almost perfect", "Solid {noun}", "Great, with one niggle"),
    3: ("It's okay", "Mixed feelings", "Does the job", "Average", "Good and bad"),
    2: ("Disappointing", "Not for me", "Expected more", "Could be better", "Not great"),
    1: ("Avoid", "Awful", "Fell apart", "Waste of money", "Very poor"),
}


def _review_doc(world: World, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _review_page(world, rng)
    p = rng.choice(world.products)
    stars = rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
    s = {"name": p.name, "noun": p.noun, "n": str(stars), "N": _NUMBER_WORDS[stars],
         "who": rng.choice(world.customers), "town": rng.choice(_TOWNS)}
    head = say(rng, ("Review: {name}", "{name} - customer review", "{who} from {town} reviewed the {name}",
                     "Customer review of the {name}", "{title}", "{title} ({name})"),
               title=say(rng, _REVIEW_TITLES[stars], **s), **s)
    rating = say(rng, ("Rating: {n}/5", "Rating: {n}/5", "{n} out of 5 stars.", "I would give it {N} out of five.",
                       "{N} stars from me." if stars > 1 else "One star from me.",
                       "Overall: {n}/5", "Score: {n} out of 5"), **s)
    body = _review_lines(world, rng, p, stars)
    update = _review_update(world, rng, p, stars) if rng.random() < 0.3 else ""
    if rng.random() < 0.5:
        body.insert(rng.randint(0, len(body)), rating if rating[-1] in ".!" else rating + ".")
        return "\n".join(x for x in (head, " ".join(body), update) if x)
    by = say(rng, ("Reviewed by {who}, {town}", "Posted by {who}", "{who}, verified buyer", ""), **s)
    return "\n".join(x for x in (head, rating, " ".join(body), update, by) if x)


def _review_page(world: World, rng: random.Random) -> str:
    """Several reviews of one product under one heading, with their average."""
    p = rng.choice(world.products)
    stars = [rng.choice((1, 2, 3, 4, 4, 5, 5, 5)) for _ in range(rng.randint(2, 4))]
    head = say(rng, ("Customer reviews: {name}", "What customers say about the {name}", "{name}: reviews"), name=p.name)
    summary = say(rng, ("Average rating {avg} out of 5 from {n} reviews.", "{n} reviews, average {avg}/5."),
                  avg=f"{sum(stars) / len(stars):.1f}", n=str(len(stars)))
    parts = [f"{head}\n{summary}"]
    for n in stars:
        who, town = rng.choice(world.customers), rng.choice(_TOWNS)
        title = say(rng, _REVIEW_TITLES[n], noun=p.noun)
        body = " ".join(_review_lines(world, rng, p, n))
        parts.append(say(rng, ("{t} - {n}/5\n{b}\n{who}, {town}", "{n}/5: {t}\n{b}", "{who} ({town}) - {n} out of 5\n{b}"),
                         t=title, n=str(n), b=body, who=who, town=town))
    return "\n\n".join(parts)


def _review_update(world: World, rng: random.Random, p: Product, stars: int) -> str:
    """A later note by the same reviewer, in the same mood."""
    s = {"span": _fill(rng, "{span}"), "noun": p.noun, "short": SHORT}
    head = say(rng, ("Update after {span}:", "Edit, {span} later:", "Update:"), **s)
    if stars >= 4:
        more = say(rng, ("Still going strong.", "Still my favourite {noun}.", "No problems at all since."), **s)
        clause = _fill(rng, rng.choice(_praise(p)))
    elif stars <= 2:
        more = say(rng, ("It has got worse.", "It went back in the end.", "{short} sent a replacement, which is a little better."), **s)
        clause = _fill(rng, rng.choice(_faults(p)))
    else:
        more, clause = say(rng, ("Still on the fence.", "No change, really.", "It is growing on me, slowly.")), ""
    return " ".join(x for x in (head, more, say(rng, "{c}.", c=clause) if clause else "") if x)


# ----------------------------------------------------------------------------- support answers
# One fixed answer sentence per fact, used by the corpus' agents and the chat data set alike.

PRODUCT_FACTS = ("price", "warranty", "material", "colour", "features", "sku")
POLICY_FACTS = ("return_window_days", "refund_days", "shipping_fee", "free_shipping_threshold",
                "standard_delivery", "express_fee", "support_hours", "support_email",
                "cancel_window_hours", "price_match_days", "repair_days", "student_discount",
                "gift_card_years", "loyalty_points")
_ANSWERS = {
    "price": "The {name} costs {price}.",
    "warranty": "The {name} comes with a {wy}-year warranty.",
    "material": "The {name} is made of {material}.",
    "colour": "The {name} comes in {colour}.",
    "features": "The {name} has {features}.",
    "sku": "The SKU of the {name} is {sku}.",
    "return_window_days": "You can return unused items within {return_window_days} of delivery.",
    "refund_days": "Refunds are processed within {refund_days} of your return arriving.",
    "shipping_fee": "Standard shipping costs {shipping_fee}.",
    "free_shipping_threshold": "Orders over {free_shipping_threshold} ship free.",
    "standard_delivery": "Standard delivery takes {standard_delivery}.",
    "express_fee": "Express shipping costs {express_fee} and takes {express_delivery}.",
    "support_hours": "Our support team is available {support_hours}, {support_days}.",
    "support_email": "You can email our support team at {support_email}.",
    "cancel_window_hours": "You can cancel an order within {cancel_window_hours} of placing it.",
    "price_match_days": "We match a lower price within {price_match_days} of purchase.",
    "repair_days": "Repairs usually take {repair_days}.",
    "student_discount": "Students get {student_discount} off full-price items.",
    "gift_card_years": "Gift cards are valid for {gift_card_years}.",
    "loyalty_points": "{loyalty_scheme} members earn {loyalty_points} for every dollar they spend.",
    "processing": "Order {number} is being packed and has not shipped yet.",
    "shipped": "Order {number} has shipped and should arrive in {standard_delivery}.",
    "out for delivery": "Order {number} is out for delivery and should arrive today.",
    "delivered": "Order {number} has been delivered.",
}
_ASK = {
    "price": ("How much is {the_p}?", "What does {the_p} cost?", "What's the price of {the_p}?",
              "How much would {the_p} set me back?", "Can you tell me the price of {the_p}?",
              "How much are you selling {the_p} for?", "What is {the_p} priced at?"),
    "warranty": ("How long is the warranty on {the_p}?", "What warranty does {the_p} come with?",
                 "Is {the_p} covered by a warranty, and for how long?",
                 "How many years of warranty do I get with {the_p}?", "What's the guarantee on {the_p}?"),
    "material": ("What is {the_p} made of?", "What material is {the_p}?", "What's {the_p} made from?",
                 "Which material do you use for {the_p}?"),
    "colour": ("What colour is {the_p}?", "Which colour does {the_p} come in?",
               "What colours can I get {the_p} in?", "Is {the_p} available in more than one colour?"),
    "features": ("What features does {the_p} have?", "What do I get with {the_p}?",
                 "Can you tell me a bit about {the_p}?", "What's special about {the_p}?"),
    "sku": ("What's the SKU for {the_p}?", "What is the product code of {the_p}?",
            "Which product code should I quote for {the_p}?"),
    "return_window_days": ("How long do I have to return something?", "What is your return policy?",
                           "How many days do I get to send something back?", "What's the return window?",
                           "Can I still return something I bought a while ago? How long do I have?"),
    "refund_days": ("How long does a refund take?", "When will I get my money back after a return?",
                    "I sent a return back last week. How long until the refund comes through?"),
    "shipping_fee": ("How much is shipping?", "What do you charge for delivery?",
                     "How much does standard shipping cost?", "Is there a delivery charge?"),
    "free_shipping_threshold": ("Do you offer free shipping?", "When is shipping free?",
                                "How much do I need to spend for free delivery?",
                                "Is there a minimum order for free shipping?"),
    "standard_delivery": ("How long does delivery take?", "If I order today, when will it arrive?",
                          "How long is standard delivery?", "How quickly do you deliver?"),
    "express_fee": ("Do you have express shipping?", "How much is express delivery?",
                    "Can I get it faster? What does express cost?", "What are your express shipping options?"),
    "support_hours": ("When is your support team available?", "What are your opening hours?",
                      "When can I call you?", "What time does customer support open?",
                      "Are you open at the weekend?"),
    "support_email": ("What's your email address?", "How can I contact you by email?",
                      "Can I email someone about an order?"),
    "cancel_window_hours": ("How long do I have to cancel an order?", "Can I cancel an order after placing it?",
                            "Is there a time limit for cancelling an order?"),
    "price_match_days": ("Do you price match?", "I found something cheaper elsewhere. Will you match the price?",
                         "How does your price match work?"),
    "repair_days": ("How long do repairs take?", "If I send something in for repair, when will I get it back?"),
    "student_discount": ("Do you have a student discount?", "Is there a discount for students?",
                         "How much off do students get?"),
    "gift_card_years": ("How long are gift cards valid?", "Do gift cards expire?", "When does a gift card run out?"),
    "loyalty_points": ("How does the loyalty scheme work?", "How many points do I earn per dollar?",
                       "What do I get for joining the {loyalty_scheme}?"),
    "order_status": ("Where is my order {number}?", "Can you tell me the status of order {number}?",
                     "Has order {number} shipped yet?", "I placed order {number} {when}. Where is it?",
                     "Any update on my order {number}?", "What's happening with order {number}?",
                     "My order number is {number}. When will it arrive?"),
}
_AGENT_EXTRA = {
    "price": ("It's one of our most popular {cat} this season.", "It's in stock online and in our {store} shop.",
              "Orders over {free_shipping_threshold} ship free."),
    "warranty": ("If anything goes wrong, just get in touch with your order number.",
                 "The warranty covers faults in materials and workmanship."),
    "material": ("It's easy to care for; a wipe with a damp cloth is usually enough.",),
    "colour": ("It looks even better in person.", "That's the only colour we make it in at the moment."),
    "return_window_days": ("You can start a return from the Orders page of your account.",
                           "I can email you a return label if you like."),
    "refund_days": ("The money goes back to the card you paid with.",),
    "shipping_fee": ("Orders over {free_shipping_threshold} ship free.",),
    "free_shipping_threshold": ("Below that, standard shipping costs {shipping_fee}.",),
    "shipped": ("The tracking link is in your shipping email.",),
    "processing": ("It should leave our warehouse {soon}.",),
    "delivered": ("If you can't find it, let us know and we'll look into it.",
                  "Check with your neighbours in case the driver left it with them."),
    "out for delivery": ("The driver will leave it in a safe place if you're out.",),
}


def _answer(world: World, key: str, product: Product | None = None, order: Order | None = None) -> str:
    """The fixed answer sentence for one fact (product facts need `product`, statuses `order`)."""
    slots = _slots(world)
    if product is not None:
        slots.update(_product_values(product), name=product.name, wy=str(product.warranty_years),
                     features=_join(product.features))
    if order is not None:
        key, slots["number"] = order.status, order.number
    return _ANSWERS[key].format(**slots)


def _ask(rng: random.Random, key: str, world: World, the_p: str = "", number: str = "") -> str:
    return say(rng, _ASK[key], the_p=the_p, number=number, loyalty_scheme=world.policies["loyalty_scheme"])


def _lead(prefix: str, text: str) -> str:
    """'And ' + 'What is it?' -> 'And what is it?'; 'Thanks. ' + 'What...' keeps the capital."""
    joined = prefix.rstrip()
    keep = not (joined.endswith(",") or joined[-1:].isalpha())
    keep = keep or text.startswith(("I ", "I'm", "I'd", "I've")) or text.split(" ", 1)[0] in ("Order", SHORT)
    return f"{prefix}{text if keep else text[:1].lower() + text[1:]}"


def _agent(world: World, rng: random.Random, answer: str, key: str, p: Product | None = None,
           lead: bool = True) -> str:
    """An agent's turn around a fixed answer: sometimes a lead-in, sometimes a helpful extra."""
    s = {**_slots(world), "store": world.stores, "cat": _CAT_PLURAL[p.category] if p else "gear"}
    parts = [say(rng, "{check}")] if lead and rng.random() < 0.35 else []
    parts.append(answer)
    if key in _AGENT_EXTRA and rng.random() < 0.4:
        parts.append(say(rng, _AGENT_EXTRA[key], **s))
    return " ".join(parts)


_CONTEXT = ("I'm planning {trip}.", "It's for {relative}, who is off on {trip}.", "I'm heading to {place} next month.",
            "My old {noun} has finally given up.", "I saw it in your shop window last week.",
            "A friend recommended it.", "I'm comparing a few options before {trip}.",
            "I work as {job} and I'm outside in all weathers.", "We're walking up to {feature} at the weekend.",
            "It's a present for {relative}.")


def _conv_product(world: World, rng: random.Random) -> list[tuple[str, str]]:
    p = rng.choice(world.products)
    turns = []
    for i, key in enumerate(rng.sample(PRODUCT_FACTS, rng.randint(1, 3))):
        q = _ask(rng, key, world, the_p=f"the {p.name}" if i == 0 or rng.random() < 0.4 else "it")
        if i:
            q = _lead(rng.choice(("And ", "Also, ", "Thanks. ", "OK, and ", "Great. ", "")), q)
        elif rng.random() < 0.4:
            q = say(rng, _CONTEXT, noun=p.noun) + " " + q
        turns += [("Customer", q), ("Agent", _agent(world, rng, _answer(world, key, p), key, p))]
    return turns


def _conv_policy(world: World, rng: random.Random) -> list[tuple[str, str]]:
    turns = []
    for i, key in enumerate(rng.sample(POLICY_FACTS, rng.randint(1, 2))):
        q = _ask(rng, key, world)
        if i:
            q = _lead(rng.choice(("And ", "Also, ", "One more thing: ", "Thanks. ")), q)
        turns += [("Customer", q), ("Agent", _agent(world, rng, _answer(world, key), key))]
    return turns


def _conv_order(world: World, rng: random.Random) -> list[tuple[str, str]]:
    o = rng.choice(world.orders)
    s = {"number": o.number, "item": o.items[0], "n_items": _join(o.items)}
    status = _agent(world, rng, _answer(world, "", order=o), o.status)
    if rng.random() < 0.5:
        return [("Customer", _ask(rng, "order_status", world, number=o.number)), ("Agent", status)]
    return [
        ("Customer", say(rng, ("Where is my order?", "I'm waiting on a parcel and it hasn't come yet.",
                               "Can you check on my order for me?", "I ordered the {item} {when} and want to know where it is."), **s)),
        ("Agent", say(rng, ("Of course. Could you give me your order number?", "Sure, what's the order number? It starts with FH.",
                            "I can look into that. What is your order number?"), **s)),
        ("Customer", say(rng, ("It's {number}.", "{number}", "The number is {number}.", "Sure, it's {number}."), **s)),
        ("Agent", status),
    ]


def _conv_cancel(world: World, rng: random.Random) -> list[tuple[str, str]]:
    o = rng.choice(world.orders)
    s = {**_slots(world), "number": o.number, "item": o.items[0]}
    ask = say(rng, ("I'd like to cancel order {number}, please.", "Can I cancel my order? It's {number}.",
                    "I ordered the {item} by mistake. Can you cancel order {number}?",
                    "Please cancel order {number}. I found what I needed locally."), **s)
    if o.status == "processing":
        reply = say(rng, ("No problem. I've cancelled order {number}, and the payment will be released straight away.",
                          "Done. Order {number} is cancelled and you won't be charged."), **s)
    else:
        reply = say(rng, ("I'm sorry, order {number} has already left our warehouse, so I can't cancel it. "
                          "You can return unused items within {return_window_days} of delivery.",
                          "Unfortunately order {number} has already shipped. Once it arrives, you can send it back "
                          "within {return_window_days} for a full refund."), **s)
    return [("Customer", ask), ("Agent", reply)]


def _conv_return(world: World, rng: random.Random) -> list[tuple[str, str]]:
    o = rng.choice([x for x in world.orders if x.status == "delivered"])
    s = {**_slots(world), "number": o.number, "item": o.items[0]}
    return [
        ("Customer", say(rng, ("I want to return the {item} from order {number}. [It doesn't fit.|I changed my mind.|It isn't what I expected.|It's the wrong size.]",
                               "How do I send back the {item}? [It's too small.|My partner bought me the same one.|I don't need it any more.]",
                               "Can I return the {item}? The order number is {number}."), **s)),
        ("Agent", _agent(world, rng, _answer(world, "return_window_days"), "return_window_days")
         + say(rng, (" I've emailed you a prepaid return label for order {number}.",
                     " Just pop it back in the box with the return slip.", ""), **s)),
        ("Customer", say(rng, ("And when will I get my refund?", "How long does the refund take?",
                               "Great. When will the money come back?"), **s)),
        ("Agent", _agent(world, rng, _answer(world, "refund_days"), "refund_days")),
    ]


def _conv_fault(world: World, rng: random.Random) -> list[tuple[str, str]]:
    p = rng.choice(world.products)
    s = {**_slots(world), "name": p.name, "fault": _fill(rng, rng.choice(_faults(p)))}
    return [
        ("Customer", say(rng, ("I bought the {name} {when} and {fault}.", "Hello, my {name} has a problem: {fault}.",
                               "I'm not happy. {Fault}.", "Is this covered? With my {name}, {fault}."),
                         Fault=s["fault"][:1].upper() + s["fault"][1:], **s)),
        ("Agent", say(rng, ("I'm sorry to hear that.", "Oh no, that shouldn't happen.", "Sorry about that."))
         + " " + _answer(world, "warranty", p)
         + say(rng, (" Could you send a photo and your order number to {support_email}?",
                     " If you reply with a photo, I can arrange a repair or a replacement."), **s)),
        ("Customer", say(rng, ("Will do. How long do repairs take?", "OK. How long will a repair take?",
                               "Thanks. How long would I be without it?"))),
        ("Agent", _agent(world, rng, _answer(world, "repair_days"), "repair_days")
         + say(rng, (" If it can't be fixed, we'll send you a new one.", ""))),
    ]


def _conv_advice(world: World, rng: random.Random) -> list[tuple[str, str]]:
    p = rng.choice(world.products)
    s = {"noun": p.noun, "a_noun": _a(p.noun), "use": rng.choice(_CATALOGUE[p.category]["uses"]), "name": p.name,
         "features": _join(p.features)}
    turns = [
        ("Customer", say(rng, ("I'm looking for {a_noun} for {use}. What would you recommend?",
                               "Which {noun} would you suggest for {use}?",
                               "Can you recommend something for {use}? I need a new {noun}."), **s)),
        ("Agent", say(rng, ("I'd suggest the {name}. It has {features}.", "The {name} would be a great choice. It has {features}.",
                            "Our customers love the {name} for that. It has {features}."), **s)),
    ]
    for key in rng.sample(("price", "colour", "warranty", "material"), rng.randint(1, 2)):
        q = _lead(rng.choice(("Sounds good. ", "Nice. ", "OK. ", "")), _ask(rng, key, world, the_p="it"))
        turns += [("Customer", q), ("Agent", _agent(world, rng, _answer(world, key, p), key, p))]
    return turns


def _conv_account(world: World, rng: random.Random) -> list[tuple[str, str]]:
    s = {**_slots(world), "number": rng.choice(world.orders).number}
    pairs = (
        (("I can't log in to my account.", "I've forgotten my password.", "My password isn't working."),
         ("I've sent a password reset link to the email address on your account. It works for one hour.",
          "No problem. I've sent you a reset link; check your spam folder if it doesn't arrive.")),
        (("I think I was charged twice for order {number}.", "There are two payments for order {number} on my card."),
         ("I'm sorry about that. I can see the second payment and have refunded it. It should show within {refund_days}.",
          "You're right, there was a duplicate payment. I've refunded it, and it should appear within {refund_days}.")),
        (("My discount code didn't work on order {number}.", "I forgot to use my student discount on order {number}."),
         ("I've applied the discount to order {number} and refunded the difference to your card.",
          "No problem, I've refunded the difference for order {number}.")),
        (("How do I change the email address on my account?", "Can I update my delivery address?"),
         ("You can change it under Account settings on our website. I can also update it for you now.",
          "That's done from the Account settings page, or I can change it for you if you give me the new details.")),
    )
    ask, reply = rng.choice(pairs)
    return [("Customer", say(rng, ask, **s)), ("Agent", say(rng, reply, **s))]


def _conv_stock(world: World, rng: random.Random) -> list[tuple[str, str]]:
    p = rng.choice(world.products)
    s = {"name": p.name, "store": rng.choice(world.stores), "colour": p.colour, "noun": p.noun,
         "standard_delivery": world.policies["standard_delivery"]}
    ask = say(rng, ("Do you have the {name} in stock at the {store} shop?", "Is the {name} in stock in {store}?",
                    "Can I pick up the {name} from your {store} shop today?"), **s)
    reply = say(rng, ("Yes, our {store} shop has the {name} in stock in {colour}.",
                      "It's out of stock in {store} at the moment, but we can deliver it in {standard_delivery}.",
                      "The {store} shop has two left. I can ask them to put one aside for you."), **s)
    turns = [("Customer", ask), ("Agent", reply)]
    if rng.random() < 0.5:
        turns += [("Customer", _lead(rng.choice(("Great. ", "OK. ", "")), _ask(rng, "price", world, the_p="it"))),
                  ("Agent", _answer(world, "price", p))]
    return turns


def _conv_gift(world: World, rng: random.Random) -> list[tuple[str, str]]:
    s = _slots(world)
    pairs = (
        (("Can you gift wrap an order?", "Do you do gift wrapping?"),
         ("Yes, gift wrapping is free. Just tick the box at checkout and add a message if you like.",)),
        (("How long can my friend use a gift card?", "Does a gift card expire?"),
         ("Gift cards are valid for {gift_card_years}.",)),
        (("Can I send a gift straight to someone else?", "Can I order something and have it delivered to my brother?"),
         ("Of course. Just enter their address at checkout; we never put prices in the parcel.",)),
    )
    ask, reply = rng.choice(pairs)
    return [("Customer", say(rng, ask, **s)), ("Agent", say(rng, reply, **s))]


_CONVERSATIONS: dict[str, tuple[Callable[[World, random.Random], list[tuple[str, str]]], int]] = {
    "product": (_conv_product, 5), "policy": (_conv_policy, 4), "order": (_conv_order, 3),
    "cancel": (_conv_cancel, 1), "return": (_conv_return, 2), "fault": (_conv_fault, 2),
    "advice": (_conv_advice, 2), "account": (_conv_account, 2), "stock": (_conv_stock, 1), "gift": (_conv_gift, 1),
}


def _support_doc(world: World, rng: random.Random) -> str:
    agent = rng.choice(world.staff)[0]
    s = {"agent": agent, "first": agent.split()[0], "date": _date(rng), "n": str(rng.randint(10000, 99999))}
    names, weights = list(_CONVERSATIONS), [w for _, w in _CONVERSATIONS.values()]
    turns: list[tuple[str, str]] = []
    if rng.random() < 0.6:
        turns.append(("Agent", say(rng, ("Hi, this is {first} from {short}. How can I help?", "Hello! You're chatting with {first}. What can I do for you?",
                                         "Welcome to {short} support. My name is {first}. How can I help today?"), short=SHORT, **s)))
    wanted, i = rng.choice((1, 2, 2, 3, 3)), 0
    while i < wanted or sum(len(t.split()) for _, t in turns) < 40:
        more = _CONVERSATIONS[rng.choices(names, weights)[0]][0](world, rng)
        if i and rng.random() < 0.6:  # a bridge between two topics
            turns.append(("Agent", say(rng, "{anything}")))
            more[0] = ("Customer", _lead(rng.choice(("Yes, actually. ", "Yes, one more thing. ", "Actually, yes. ",
                                                     "Yes please. ")), more[0][1]))
        turns += more
        i += 1
    if turns[0][0] == "Customer" and rng.random() < 0.5:
        turns[0] = ("Customer", _lead(say(rng, "{hello}, "), turns[0][1]))
    if rng.random() < 0.7:
        if rng.random() < 0.5:
            turns.append(("Agent", say(rng, "{anything}")))
        turns += [("Customer", say(rng, "{bye_customer}")), ("Agent", say(rng, "{bye_agent}"))]
    header = say(rng, ("Live chat transcript, {date}", "Support chat with {agent}", "Chat #{n}",
                       "Conversation with {short} support, {date}", "", ""), short=SHORT, **s)
    body = "\n".join(f"{who}: {text}" for who, text in turns)
    return f"{header}\n\n{body}" if header else body


# ----------------------------------------------------------------------------- other corpus kinds


def _text(paragraphs: list[Paragraph]) -> str:
    return _assemble(paragraphs)[0]


def _product_doc(world: World, rng: random.Random) -> str:
    p = rng.choice(world.products)
    text = _text(_product_paragraphs(world, rng, p))
    if rng.random() < 0.4:
        quotes = []
        for _ in range(rng.randint(1, 2)):
            stars = rng.choice((3, 4, 4, 5, 5))
            lines = _review_lines(world, rng, p, stars)[:3]
            quotes.append(f"{stars}/5 - " + " ".join(lines) + f" ({rng.choice(world.customers)})")
        text += "\n\n" + say(rng, ("What customers say", "Recent reviews", "From our reviews")) + "\n" + "\n".join(quotes)
    return text


def _policy_doc(world: World, rng: random.Random) -> str:
    paragraphs: list[Paragraph] = []
    if rng.random() < 0.4:
        paragraphs.append(("", [(say(rng, ("{company}: customer information", "Our policies",
                                           "Help centre - {company}", "Policies, updated {date}"),
                                     company=world.company, date=_date(rng)), {})]))
    for topic in rng.sample(list(_POLICY_TOPICS), rng.choice((2, 2, 3, 4))):
        paragraphs += _policy_paragraphs(world, rng, topic)
    return _text(paragraphs)


def _faq_doc(world: World, rng: random.Random) -> str:
    title = say(rng, ("Frequently asked questions", "FAQ", "Your questions answered",
                      "Help: common questions", "Before you order: questions and answers"))
    form = rng.choice(("Q: {q}\nA: {a}", "{q}\n{a}", "Question: {q}\nAnswer: {a}"))
    pairs = [say(rng, ("Here are the questions our support team hears most often.",
                       "Can't find your answer here? Our team is happy to help.",
                       "Short answers to the things customers ask us every day."))]
    for key in rng.sample(POLICY_FACTS, rng.randint(5, 9)):
        a = _agent(world, rng, _answer(world, key), key, lead=False)
        pairs.append(form.format(q=_ask(rng, key, world), a=a))
    return title + "\n\n" + "\n\n".join(pairs)


def _order_lines(world: World, rng: random.Random, o: Order) -> tuple[list[str], float]:
    lines, total = [], 0.0
    for name in o.items:
        p, qty = world.product(name), rng.choice((1, 1, 1, 1, 2))
        total += p.price * qty
        each = f" ({_money(p.price)} each)" if qty > 1 else ""
        lines.append(f"- {p.name}, {p.colour}, x{qty}{each}: {_money(p.price * qty)}")
    return lines, round(total, 2)


def _email_doc(world: World, rng: random.Random) -> str:
    o = rng.choice(world.orders)
    first = o.customer.split()[0]
    kind = rng.choice({"processing": ("confirm",), "delivered": ("confirm", "ship", "delivered", "refund")}
                      .get(o.status, ("confirm", "ship")))
    s = {**_slots(world), "number": o.number, "first": first, "placed": o.placed, "item": o.items[0],
         "city": o.city, "warehouse": world.warehouses}
    subject = {
        "confirm": ("Your order {number} is confirmed", "Order confirmation: {number}", "Thanks for your order ({number})"),
        "ship": ("Your order {number} is on its way", "Order {number} has shipped", "Good news: {number} has left our warehouse"),
        "delivered": ("Your order {number} has been delivered", "Delivered: order {number}"),
        "refund": ("Your refund for order {number}", "Refund processed: {number}"),
    }[kind]
    opening = {
        "confirm": ("[Thank you for shopping with {company}.|Thanks for your order!|We're delighted you chose {short}.] "
                    "[We have received your order {number}|Your order {number} has been confirmed|Order {number} is in] "
                    "[and are getting it ready.|and our team will pack it {soon}.|and it is now being prepared.]"),
        "ship": ("[Good news!|Great news:|It's on the way!] [Your order {number} has shipped|Order {number} has left our "
                 "{warehouse} warehouse|We have dispatched order {number}] and should arrive in {standard_delivery}."),
        "delivered": ("Our records show that order {number} was delivered to your address in {city}. "
                      "[We hope you enjoy it.|We hope it brings you many happy trips.|Enjoy your new gear!]"),
        "refund": ("We have received the {item} you sent back from order {number}. "
                   "[Your refund is on its way.|We have refunded the full amount.|The refund has been issued.] "
                   "It can take up to {refund_days} to appear on your statement."),
    }[kind]
    paras = [f"{rng.choice(('Hi', 'Hello', 'Dear', 'Hey'))} {first},", say(rng, opening, **s)]
    if kind == "confirm":
        lines, subtotal = _order_lines(world, rng, o)
        threshold = float(world.policies["free_shipping_threshold"].lstrip("$"))
        fee = 0.0 if subtotal > threshold else float(world.policies["shipping_fee"].lstrip("$"))
        paras.append("\n".join([f"Order number: {o.number}", f"Order date: {o.placed}", "Items:", *lines,
                                f"Subtotal: {_money(subtotal)}",
                                "Shipping: free" if fee == 0 else f"Shipping: {_money(fee)}",
                                f"Total: {_money(subtotal + fee)}"]))
        if rng.random() < 0.5:
            points = int(subtotal) * int(world.policies["loyalty_points"])
            paras.append(say(rng, ("This order earns you {pts} points in the {loyalty_scheme}.",
                                   "As a member of the {loyalty_scheme}, you earn {pts} points with this order."),
                             pts=f"{points:,}", **s))
        paras.append(say(rng, ("[Your parcel should arrive in {standard_delivery}.|Standard delivery takes {standard_delivery}.] "
                               "We will email you a tracking link when it ships.",
                               "You will get another email with tracking details as soon as your order ships."), **s))
    if kind in ("confirm", "delivered") and rng.random() < 0.5:
        bought = world.product(o.items[0])
        if kind == "delivered":
            paras.append(say(rng, ("A tip for your {noun}:", "Looking after your {noun}:"), noun=bought.noun) + " "
                         + " ".join(rng.sample(_CARE[bought.category], 2)))
        else:
            p = rng.choice([x for x in world.products if x.category == bought.category and x is not bought])
            paras.append(say(rng, ("You might also like the {name} ({price}), which has {feature}.",
                                   "Customers who bought the {item} also liked the {name}, at {price}."),
                             name=p.name, price=_money(p.price), feature=p.features[0], item=bought.name))
    extras = ("If anything is wrong with your order, reply to this email or write to {support_email}.",
              "Our team is available {support_hours}, {support_days}, if you have any questions.",
              "Remember, you can return unused items within {return_window_days} of delivery.",
              "Members of the {loyalty_scheme} earn {loyalty_points} for every dollar spent.",
              "Changed your mind? You can cancel within {cancel_window_hours} of placing an order.")
    paras += [say(rng, e, **s) for e in rng.sample(extras, rng.randint(2, 3))]
    paras.append(say(rng, "{signoff},\nThe {company} team", **s))
    if rng.random() < 0.5:
        paras.append(say(rng, ("You are receiving this email because you placed an order with {company}. "
                               "{company}, {hq}.", "Please do not reply to this address; write to {support_email} instead."),
                         **s))
    return f"Subject: {say(rng, subject, **s)}\n\n" + "\n\n".join(paras)


_NEWS = {
    "launch": ("{company} launches the {name}", "New this season: the {name}", "Meet the {name}"),
    "shop": ("New {short} shop opens in {town}", "{short} comes to {town}", "Doors open in {town}"),
    "repair": ("{number_word} thousand repairs and counting", "Our repair team's busiest year yet",
               "Why we mend rather than replace"),
    "cleanup": ("Volunteers clear litter from {place}", "{short} staff and customers tidy {place}", "A cleaner {place}"),
    "birthday": ("{company} celebrates {age} years", "From one shop in {hq} to {n_shops}: our story"),
    "materials": ("More recycled fabric in our {cat}", "Changing what our {cat} are made of"),
    "rescue": ("Supporting the rescue volunteers of {place}", "A new partnership with the rescue team at {place}"),
    "photos": ("Winners of our outdoor photo competition", "Your best pictures from {place}"),
    "juniors": ("Junior adventure days return to {town}", "Getting children outdoors in {town}"),
    "expedition": ("Our staff cross {place} in {days} days", "Notes from a staff expedition to {place}"),
}
_NEWS_BODY = {
    "launch": ("The {name} arrives in our shops and online this [week|month]. It is made of {material}, comes in "
               "{colour} and costs {price}.",
               "Our design team spent [two|three] seasons testing it on {trip} before it was ready. It has {features}.",
               "\"{quote_launch},\" said {staff}, our {role}. \"[We think you will love it.|We are proud of this one.|"
               "It has already been on more trips than most of us.]\""),
    "shop": ("Our new shop in {town} [opens its doors|opens] [next week|this Saturday|at the end of the month], bringing "
             "the number of {short} shops to {n_shops}.",
             "The shop stocks our full range, from {cat} to {cat2}, and has a small repair desk at the back. "
             "[There is also a bench where you can try on boots with a proper slope to walk on.|"
             "Upstairs, a room is set aside for talks and map evenings.|]",
             "\"{quote_shop},\" said {staff}, our {role}.",
             "Come along on the first weekend for free tea and a chat about {trip}."),
    "repair": ("This year our repair team mended more than {number_word} thousand items, from torn jackets to broken "
               "zips and wobbly stove legs.",
               "Repairs usually take {repair_days}, and most are covered by the warranty. [The most common job is "
               "replacing a zip.|Boots with worn soles are the most common job.|Tents with snapped poles come a close second.]",
               "\"{quote_repair},\" said {staff}, our {role}."),
    "cleanup": ("[Last weekend|On Saturday|Over the bank holiday], [forty|sixty|more than a hundred] volunteers joined "
                "our staff for a litter pick at {place}.",
                "Together they filled [dozens of|more than eighty|nearly fifty] bags and cleared an old fence from the path. "
                "[Among the finds were a bicycle wheel and a garden chair.|The oddest find was a rubber duck.|]",
                "\"{quote_cleanup},\" said {staff}, our {role}.", "The next clean-up is planned for {place2} in the spring."),
    "birthday": ("{company} was founded in {hq} in {founded}, when our first shop sold secondhand boots and handmade bags.",
                 "Today we have shops in {stores}, and distribution centres in {warehouses}.",
                 "\"{quote_birthday},\" said {staff}, our {role}.",
                 "To celebrate, members of the {loyalty_scheme} will get double points for a week."),
    "materials": ("From this season, more of our {cat} use recycled or responsibly sourced materials.",
                  "The {name}, for example, is made of {material}. [Every fabric is tested for a full season before "
                  "it reaches the shops.|We test each new fabric in {weather} before we use it.|]",
                  "\"{quote_materials},\" said {staff}, our {role}."),
    "rescue": ("We are proud to support the volunteer rescue team that covers {place} and {place2}.",
               "For every {cat_one} sold this season, we will give a donation to the team, and our staff will help at "
               "their open days.",
               "\"{quote_rescue},\" said {staff}, our {role}.",
               "Before any walk, check the forecast, tell someone your route and carry a light and a warm layer."),
    "photos": ("More than [four hundred|six hundred|a thousand] of you sent in pictures for this year's photo competition.",
               "The winning picture shows {wildlife} at {place}, taken at first light by a customer from {town}.",
               "\"{quote_photos},\" said {staff}, our {role}.",
               "The winner receives the {name} and a voucher to spend in any of our shops."),
    "juniors": ("Our junior adventure days are back in {town} this [spring|summer|autumn].",
                "Children aged eight to twelve can learn to pitch a tent, read a map and cook {food} on a camp stove.",
                "\"{quote_juniors},\" said {staff}, our {role}.", "Places are free, but please book early."),
    "expedition": ("[Four|Five|Six] members of our team spent {days} days crossing {place}, carrying everything they needed.",
                   "They met {weather} on the first day and {wildlife} on the last, and walked over {terrain} in between.",
                   "\"{quote_expedition},\" said {staff}, our {role}.",
                   "The gear they used, including the {name}, came straight from our shelves."),
    "award": ("{short} named outdoor shop of the year", "Our {town} shop wins a regional award"),
    "apprentices": ("New apprentices join our repair workshop", "Learning to mend: our apprentices start work"),
    "winter": ("Getting ready for winter walking", "Short days, cold hills: our winter checklist"),
    "film": ("Outdoor film night in {town}", "Films, tea and stories at our {town} shop"),
    "tracking": ("A better way to follow your parcel", "New parcel tracking on our website"),
}
_NEWS_BODY.update({
    "award": ("Readers of a regional walking magazine have voted our {town} shop the best outdoor shop in the region.",
              "The judges praised the staff's knowledge, the repair desk and the free map library. [Several readers "
              "mentioned the tea.|One reader wrote that the staff talked them out of buying boots they did not need.|]",
              "\"{quote_award},\" said {staff}, our {role}.", "Thank you to everyone who voted."),
    "apprentices": ("[Four|Five|Six] new apprentices have joined our repair workshop in {hq}.",
                    "Over two years they will learn to patch, stitch, re-sole and re-proof under our most experienced "
                    "menders, and spend time in our shops learning how customers actually use their gear.",
                    "\"{quote_apprentices},\" said {staff}, our {role}."),
    "winter": ("The days are short, so start early and carry a light, even on a short walk.",
               "Check the forecast for the summits, not just the valleys, and turn back if {weather} sets in.",
               "Pack a spare warm layer, gloves and a flask of something hot. The {name}, at {price}, is a favourite "
               "with our staff this time of year.",
               "\"{quote_winter},\" said {staff}, our {role}."),
    "film": ("Our {town} shop hosts an outdoor film night [next month|on the first Friday of every month|this winter], "
             "with short films about climbing, sailing and long-distance walking.",
             "Tickets are free for members of the {loyalty_scheme}, and there is a small charge for everyone else, "
             "which goes to the local rescue team.",
             "\"{quote_film},\" said {staff}, our {role}."),
    "tracking": ("Our website now shows where your parcel is, from the moment it leaves our warehouse in {warehouse} "
                 "to your doorstep.",
                 "You can also change your delivery day and leave instructions for the driver. Standard delivery still "
                 "takes {standard_delivery}, and orders over {free_shipping_threshold} still ship free.",
                 "\"{quote_tracking},\" said {staff}, our {role}."),
})
_QUOTES = {
    "quote_launch": ("We wanted {a_noun} that simply works, trip after trip", "This is the {noun} our own team kept asking for",
                     "We tested it in {weather} and it did not flinch"),
    "quote_shop": ("We have wanted to be in {town} for years", "A shop is where you meet the people who use your gear",
                   "We can't wait to meet our new neighbours"),
    "quote_repair": ("Every repair is one less thing thrown away", "A patched jacket is a jacket with a story",
                     "We would always rather mend than replace"),
    "quote_cleanup": ("It was wonderful to see so many people give up their weekend", "We all love {place}, so we should look after it",
                      "The hills give us a lot; this is a small way to give back"),
    "quote_birthday": ("We are still the same small company at heart", "None of this would exist without our customers",
                       "I still remember packing the first parcels by hand"),
    "quote_materials": ("Better materials are the biggest change we can make", "It has taken years of testing to get here",
                        "Our customers asked for it, and they were right"),
    "quote_rescue": ("The rescue volunteers give up their nights and weekends for all of us",
                     "We hope nobody ever needs them, but we are glad they are there"),
    "quote_photos": ("Choosing a winner was almost impossible this year", "The pictures reminded us why we do what we do"),
    "quote_juniors": ("Some of our best staff first camped with us as children", "Nothing beats seeing a child pitch their first tent"),
    "quote_award": ("This belongs to everyone who works in the shop", "We are a bit lost for words, to be honest"),
    "quote_apprentices": ("Mending is a skill worth passing on", "In a few years they will be teaching me"),
    "quote_winter": ("Winter is the best season in the hills, if you are ready for it",
                     "The mountain does not care what the forecast said"),
    "quote_film": ("There is nothing like a good film to get you planning your next trip",
                   "Last time we ran out of chairs, so come early"),
    "quote_tracking": ("The question we hear most is where is my parcel, so we wanted a better answer",
                       "It should save a lot of phone calls"),
    "quote_expedition": ("We learned more about our gear in a week than in a year of testing",
                         "It was hard going, but we would do it again tomorrow"),
}


def _news_doc(world: World, rng: random.Random) -> str:
    kind = rng.choice(list(_NEWS))
    p = rng.choice(world.products)
    staff, role = rng.choice(world.staff)
    places = rng.sample(_POOLS["place"], 2)
    cats = [_CAT_PLURAL[p.category], _CAT_PLURAL[rng.choice([c for c in _CAT_PLURAL if c != p.category])]]
    s = {**_product_slots(world, p, rng), "staff": staff, "role": role, "town": rng.choice(world.stores),
         "date": _date(rng), "n_shops": _NUMBER_WORDS[len(world.stores)], "cat": cats[0], "cat2": cats[1],
         "place": places[0], "place2": places[1], "age": str(_YEAR - world.founded),
         "number_word": rng.choice(("two", "three", "four", "five")), "stores": _join(world.stores),
         "cat_one": p.noun, "days": rng.choice(("five", "six", "eight", "ten")), "warehouse": world.warehouses}
    s.update({k: _fill(rng, v, **s).rstrip(".") for k, v in _QUOTES.items()})
    dateline = say(rng, ("{hq}, {date}.", "{date}.", "News from {short}, {date}.", ""), **s)
    body = [say(rng, b, **s).strip() for b in _NEWS_BODY[kind]]
    about = say(rng, ("About {company}: founded in {hq} in {founded}, we design and sell outdoor gear built to "
                      "last, and we repair what we sell. We have {n_shops} shops and a website that ships from {warehouses}.",
                      "{company} makes bags, tents, camp kitchen kit, lights, clothing and footwear for walkers and "
                      "campers. Our shops are in {stores}.", "", ""), **s)
    parts = (say(rng, _NEWS[kind], **s), dateline + (" " if dateline else "") + body[0], *body[1:], about)
    return "\n\n".join(x for x in parts if x)


_NOTES = (
    ("Low stock: {name}", "The {name} is running low at our {warehouse} distribution centre. New stock is due on {date}. "
     "Until then, please offer customers the option to pre-order, and let them know it costs {price} as usual."),
    ("Common questions this week", "Customers keep asking about {topic}. Please remember: {fact} "
     "If anyone needs more detail, the help pages cover it."),
    ("Training on {day}", "Product training on our {cat} is on {day} at [ten|two|three] o'clock in the {hq} office. "
     "Bring your questions; {trainer} will walk through the range, including the {name}."),
    ("Shift cover", "{trainer} is covering the late chat shift on {day}. Our support hours stay the same: {support_hours}, "
     "{support_days}. Please swap shifts through the rota, not by email."),
    ("Reminder about returns", "A quick reminder that unused items can be returned within {return_window_days} of delivery, "
     "and refunds are processed within {refund_days}. Please don't promise anything faster."),
    ("Feedback on the {name}", "We have had several reviews along the lines of \"{fault}\". If a customer mentions it, log it with "
     "the SKU {sku} so the product team can look into it. The warranty is {warranty}."),
    ("Shop window", "The {town} shop window changes on {day}. The theme is {trip}, and the {name} takes centre stage."),
    ("Lost property", "{a_colour_noun} was left in the {store} shop on {day}. If a customer calls about it, it is in "
     "the back office."),
    ("Parcel delays", "Parcels to {town} are running a day late because of {weather} on the roads. Please apologise and "
     "explain that standard delivery normally takes {standard_delivery}."),
    ("Repair backlog", "The repair workshop is busy after the holidays, but repairs still usually take {repair_days}. "
     "If a customer is waiting for a repair before a trip, ask the workshop to look at it first."),
    ("Tone of voice", "A reminder: keep answers short, friendly and exact. Give the price, the warranty or the date the "
     "customer asked for, then offer more help."),
    ("New starter", "Please welcome {trainer}, who joins the support team this week. Before joining us, {trainer} "
     "worked as {job} and knows {place} very well."),
    ("Great feedback", "A customer from {town} wrote in to say that {trainer} went out of their way to help with a "
     "[lost parcel|faulty {noun}|last-minute gift]. Thank you, and well done!"),
)


_TOPIC_NAMES = {
    "return_window_days": "how long they have to return things", "refund_days": "refund times",
    "shipping_fee": "the shipping fee", "free_shipping_threshold": "free shipping",
    "standard_delivery": "delivery times", "express_fee": "express shipping",
    "support_hours": "our opening hours", "support_email": "how to email us",
    "cancel_window_hours": "cancelling orders", "price_match_days": "price matching",
    "repair_days": "how long repairs take", "student_discount": "the student discount",
    "gift_card_years": "gift cards", "loyalty_points": "loyalty points",
}


def _staff_note_doc(world: World, rng: random.Random) -> str:
    (writer, role), (trainer, _) = rng.sample(world.staff, 2)
    p = rng.choice(world.products)
    key = rng.choice(POLICY_FACTS)
    s = {**_product_slots(world, p, rng), "warehouse": world.warehouses, "date": _date(rng), "trainer": trainer,
         "day": rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")),
         "town": rng.choice(_TOWNS), "topic": _TOPIC_NAMES[key], "store": world.stores,
         "fact": _answer(world, key), "fault": _fill(rng, rng.choice(_faults(p)))}
    notes = rng.sample(_NOTES, rng.choice((1, 2, 2, 3, 3)))
    subject = say(rng, notes[0][0], **s) if len(notes) == 1 else say(rng, (
        "A few things for this week", "Team update", "Notes from {day}'s meeting", "This week in support"), **s)
    head = say(rng, ("To: support team\nFrom: {writer}, {role}\nSubject: {subject}", "Staff note: {subject}",
                     "Internal memo - {subject}", "Note for the team ({subject})"),
               writer=writer, role=role, subject=subject)
    if len(notes) == 1:
        body = say(rng, notes[0][1], **s) + "\n\n" + say(rng, (
            "Any questions, ask me or {trainer} on the team chat.", "Thanks for all your hard work this week.",
            "I will bring it up again at Monday's meeting, so come with ideas."), **s)
    else:
        body = "\n\n".join(f"{i}. {say(rng, t, **s)}. {say(rng, b, **s)}" for i, (t, b) in enumerate(notes, 1))
    return f"{head}\n\n{body}\n\n{say(rng, ('Thanks, {w}', '{w}', 'Cheers, {w}'), w=writer.split()[0])}"


_CHOOSE = {
    "bags": ("Try {a_noun} on with some weight inside before you decide.", "Look for a hip belt if you carry more than a few kilos.",
             "Pick a size for the trips you actually take, not the ones you dream of.",
             "Side pockets you can reach without taking the bag off are worth a lot.",
             "Bright colours are easier to spot if you put the bag down in long grass."),
    "tents": ("Think about how many people will sleep in it, then add room for bags.",
              "A porch is worth its weight when it rains for days.", "Look at the packed size as well as the weight.",
              "Two doors mean nobody climbs over anybody at night.", "Check how long it takes to pitch, not just how it looks."),
    "cookware": ("Match the size of your pan to the size of your group.", "Keep your stove out of the wind with a rock or a windshield.",
                 "Pick pots that nest inside each other to save space.", "A lid saves fuel and boils water far faster.",
                 "Think about what you actually cook; most trips need one pot and a mug."),
    "lighting": ("Carry a spare light for long winter walks.", "A red light mode saves your night vision and your friends' eyes.",
                 "Rechargeable lights save money and batteries.", "For the tent, a soft lantern beats a bright torch.",
                 "Check how long the battery lasts on a medium setting, not just the brightest."),
    "clothing": ("Layer up: a base layer, a warm middle layer and a shell.", "Try it on over the layers you will wear outdoors.",
                 "Lift your arms: a jacket should not ride up at the back.", "Hoods that move with your head keep you safer.",
                 "Pockets above a hip belt are far easier to use."),
    "footwear": ("Try boots on in the afternoon, when your feet are a little larger.", "Wear them around the house before a long walk.",
                 "Bring the socks you walk in when you try them on.", "Walk down a slope in the shop; your toes should not touch the front.",
                 "Heavy boots are not always better; match them to the ground you walk on."),
}


def _guide_doc(world: World, rng: random.Random) -> str:
    if rng.random() < 0.3:
        return _packing_list_doc(world, rng)
    cat = rng.choice(list(_CATALOGUE))
    picks = [p for p in world.products if p.category == cat]
    rng.shuffle(picks)
    s = {"noun": picks[0].noun, "a_noun": _a(picks[0].noun), "cat": _CAT_PLURAL[cat], "trip": _fill(rng, "{trip}"),
         "short": SHORT}
    title = say(rng, ("How to choose your {cat}", "A guide to {cat}", "Getting the most from your {cat}",
                      "What to look for in {cat}"), **s)
    intro = say(rng, ("Planning {trip}? The right {cat} make all the difference.",
                      "Our shop staff answer questions about {cat} every day, so here is what they tell customers.",
                      "There is no single best choice, but a few simple rules help."), **s)
    tips = [say(rng, t, **s) for t in rng.sample(_CHOOSE[cat], rng.randint(2, 4))]
    care = [say(rng, t, **s) for t in rng.sample(_CARE[cat], rng.randint(1, 3))]
    uses = rng.sample(_CATALOGUE[cat]["uses"], 3)
    recs = [say(rng, ("The {name} ({price}) is a good fit for {use}.", "For {use}, try the {name} at {price}.",
                      "If you need something for {use}, the {name} costs {price} and has {feature}."),
                name=p.name, price=_money(p.price), use=use, feature=p.features[0])
            for p, use in zip(picks[: rng.randint(2, 3)], uses, strict=False)]
    bullet = rng.random() < 0.5
    tips_text = "\n".join("- " + t for t in tips) if bullet else " ".join(tips)
    care_head = say(rng, ("Looking after them", "Care", "Making them last"))
    return "\n\n".join((title, intro, tips_text, care_head + "\n" + " ".join(care), " ".join(recs)))


def _packing_list_doc(world: World, rng: random.Random) -> str:
    trip = _fill(rng, "{trip}")
    picks = [rng.choice([p for p in world.products if p.category == c]) for c in rng.sample(list(_CATALOGUE), 4)]
    lines = [say(rng, ("Packing list: {trip}", "What to pack for {trip}", "Our checklist for {trip}"), trip=trip),
             say(rng, ("Here is what our staff took on {trip}, and why.", "Forget something on {trip} and you will know "
                       "about it. Here is our list.", "Less is more, but a few things are worth carrying."), trip=trip)]
    for p in picks:
        lines.append(f"- {p.name} ({_money(p.price)}): " + say(rng, (
            "{c}.", "chosen because {c}.", "we never leave without it, because {c}."), c=_fill(rng, rng.choice(_praise(p)))))
    lines.append(say(rng, ("Add food, water, a map and a warm hat, and you are ready.",
                           "Don't forget a map, a first aid kit and a spare layer.",
                           "Whatever you pack, tell someone where you are going.")))
    return "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:-1]) + "\n\n" + lines[-1]


_TRIP_ROUTE = (
    "We set off from {town} early, following the old track north towards {place}.",
    "The first few miles were easy going over {terrain}, then the path climbed steeply.",
    "By midday we had reached {place}, where we stopped for {food}.",
    "In the afternoon the route dropped through {terrain} to a river we had to cross twice.",
    "We camped by {river}, with a view of {place} across the water.",
    "The second day was longer: {miles} miles over {terrain}, with hardly another soul in sight.",
    "On the last morning we woke to {wildlife}, which made the early start worth it.",
    "The final stretch followed the coast back to the car park, with the wind at our backs.",
    "Halfway up we passed {feature}, and {bird} kept us company for a while.",
    "The verges were full of {plant}.",
    "We made a short detour to see {feature}, which was well worth it.",
    "That evening we cooked {food} and watched {bird} over the water.",
)


_WALK_STEPS = (
    "From the car park, follow the lane past the church and cross the stile into the meadow.",
    "Bear left at the fork and keep the hedgerow on your right until you reach a metal gate.",
    "Cross the cattle grid and climb steadily beside the beck, passing an old sheepfold.",
    "At the waymarker, turn uphill and zigzag up the spur to the shoulder of the hill.",
    "Follow the edge of the escarpment north, with wide views over the valley below.",
    "The summit is marked by a cairn and a trig point; on a clear day you can see the sea.",
    "Descend gently over rough pasture towards a copse of beech trees.",
    "Go through the orchard and past the old mill, then cross the weir on the footbridge.",
    "Join the towpath and follow it under the viaduct, past two locks and a row of cottages.",
    "Climb the steps up the embankment and follow the old railway line for a mile.",
    "Turn right at the chapel and follow the sunken lane back down into the village.",
    "Finish on the village green, where the inn and the tearoom both welcome muddy boots.",
    "Keep dogs on a lead here, as sheep graze the open fell all year.",
    "The path skirts a boggy hollow; stepping stones help after heavy rain.",
    "Cross the ford, or use the stepping stones a little upstream if the water is high.",
    "A short detour leads to {feature}, well worth the extra ten minutes.",
)


def _walk_doc(world: World, rng: random.Random) -> str:
    """Walk of the month: a route description with the practical details."""
    p = rng.choice(world.products)
    s = {"town": rng.choice(_TOWNS), "store": rng.choice(world.stores), "name": p.name, "noun": p.noun}
    head = say(rng, ("Walk of the month: {place}", "A walk around {place}", "Our favourite walk: {place}"), **s)
    facts = say(rng, ("Distance: {miles} miles. Time: about [three|four|five] hours. Grade: [easy|moderate|strenuous]. "
                      "Start: the car park in {town}.", "Start and finish: {town}. Length: {miles} miles, "
                      "[mostly on good paths|with one steep climb|with some rough ground]."), **s)
    steps = [say(rng, t, **s) for t in sorted(rng.sample(_WALK_STEPS, rng.randint(4, 7)), key=_WALK_STEPS.index)]
    nature = say(rng, ("Look out for {bird} and {plant} in [spring|early summer|late summer].",
                       "In [April|May|June] the banks are covered in {plant}, and you may spot {bird}.",
                       "Listen for {bird} along the river."), **s)
    tip = say(rng, ("Kit tip: our staff walked it with the {name}, which {c}.", "Kit tip: {c}, so the {name} is a good "
                    "companion on this one.", "Our {store} shop staff recommend the {name} for this route."),
              c=_fill(rng, rng.choice(_praise(p))), **s)
    travel = say(rng, ("Getting there: buses run from {town} [every hour|twice a day|on weekdays only].",
                       "Parking is limited, so arrive early or take the bus from {town}.",
                       "There are toilets and a small shop at the start."), **s)
    return "\n\n".join((head, facts, " ".join(steps), nature + " " + tip, travel))


def _trip_report_doc(world: World, rng: random.Random) -> str:
    """A staff trip report: route, weather and the gear that came along."""
    staff, role = rng.choice(world.staff)
    s = {"town": _TOWNS, "nights": _fill(rng, "{nights}")}
    title = say(rng, ("Trip report: {nights} nights around {place}", "Staff trip: {place} in {weather}",
                      "Out and about: {place}", "Weekend notes from {place}"), **s)
    by = say(rng, ("By {staff}, {role}", "Written by {staff}, our {role}", "{staff} ({role})"), staff=staff, role=role)
    route = [say(rng, t, **s) for t in sorted(rng.sample(_TRIP_ROUTE, rng.randint(4, 7)), key=_TRIP_ROUTE.index)]
    weather = say(rng, ("The weather [was mixed|turned on day two|was kinder than forecast]: {weather} in the morning and "
                        "sunshine later.", "We had {weather} for most of the trip, which tested everything we carried.",
                        "It was dry and cold, with a hard frost each night."))
    gear = []
    for p in rng.sample(world.products, rng.randint(2, 4)):
        gear.append(say(rng, ("I took the {name}, and {c}.", "The {name} came too: {c}.", "{Name_c}: {c}."),
                        name=p.name, Name_c=f"The {p.name}", c=_fill(rng, rng.choice(_praise(p)))))
    close = say(rng, ("I would go back tomorrow.", "Next time I will take a lighter bag.",
                      "If you go, start early and take more food than you think you need.",
                      "Ask me about it in the {town} shop."), **s)
    return "\n\n".join((title, by, " ".join(route), weather + " " + " ".join(gear), close))


def _product_qa_doc(world: World, rng: random.Random) -> str:
    p = rng.choice(world.products)
    staff = rng.choice(world.staff)[0].split()[0]
    lines = [say(rng, ("Questions about the {name}", "Customer questions: {name}", "Ask about the {name}"), name=p.name)]
    for key in rng.sample(PRODUCT_FACTS, rng.randint(3, 5)):
        q = _ask(rng, key, world, the_p=rng.choice((f"the {p.name}", "this")))
        lines.append(f"{rng.choice(world.customers)} asked: {q}\n{staff} from {SHORT} answered: "
                     + _agent(world, rng, _answer(world, key, p), key, p, lead=False))
    return "\n\n".join(lines)


_CORPUS_KINDS: dict[str, tuple[Callable[[World, random.Random], str], int]] = {
    "product": (_product_doc, 14), "review": (_review_doc, 20), "support": (_support_doc, 20),
    "policy": (_policy_doc, 8), "faq": (_faq_doc, 5), "email": (_email_doc, 10), "news": (_news_doc, 8),
    "staff_note": (_staff_note_doc, 6), "guide": (_guide_doc, 5), "product_qa": (_product_qa_doc, 4),
    "trip_report": (_trip_report_doc, 5), "walk": (_walk_doc, 3),
}


def corpus_documents(world: World, n_docs: int, seed: int) -> Iterator[str]:
    """Pre-training documents: a weighted mix of the kinds in `_CORPUS_KINDS`."""
    rng = random.Random(f"corpus:{seed}")
    names, weights = list(_CORPUS_KINDS), [w for _, w in _CORPUS_KINDS.values()]
    for _ in range(n_docs):
        yield _CORPUS_KINDS[rng.choices(names, weights)[0]][0](world, rng)


# ----------------------------------------------------------------------------- held-out domain
# Field technicians' reports and maintenance logs from the distribution centres: same world,
# a vocabulary the corpus never uses (conveyor, gearbox, torque, lockout, ...). No blank lines
# inside a document, so a plain-text file can separate documents with one.

# equipment group -> (equipment, symptoms, findings, actions, parts)
_PLANT: dict[str, tuple[tuple[str, ...], ...]] = {
    "conveyor": (
        ("conveyor {n}", "the spiral conveyor", "the sortation line", "the merge conveyor on pack line {n}"),
        ("belt slipping under load", "intermittent stops on the photo-eye", "grinding noise from the gearbox",
         "cartons jamming at the merge point", "excessive vibration at the head pulley",
         "burning smell near the drive motor", "fault code E-{code} on the drive"),
        ("drive belt worn and glazed", "bearing on the tail pulley running hot", "photo-eye misaligned by about {mm} mm",
         "gearbox oil below the sight glass", "strapping and shrink film wrapped around the drive roller",
         "coupling insert perished", "motor drawing {amps} A against a rated {rated} A", "chain tension outside tolerance"),
        ("replaced the drive belt and re-tensioned to spec", "realigned the photo-eye and tested with {count} cartons",
         "fitted a new bearing and greased both ends", "topped up the gearbox oil to the sight glass",
         "cleared debris from the drive roller", "replaced the coupling insert", "cleaned the sensor lenses on the whole line",
         "checked motor current under load", "adjusted chain tension and lubricated the sprockets"),
        ("1 x drive belt ({part})", "2 x 6204 bearings", "1 x coupling insert ({part})", "1 x proximity sensor ({part})",
         "gearbox oil, 2 litres"),
    ),
    "packing": (
        ("the carton sealer on pack line {n}", "the shrink wrapper", "the case erector on pack line {n}",
         "the label applicator on pack line {n}"),
        ("seal bar not reaching temperature", "labels misfeeding and skewing", "tape not cutting cleanly",
         "film tearing at the wrap head", "cartons crushed at the folding station", "fault code E-{code} on the HMI"),
        ("thermocouple reading {deg} degrees low", "cutter blade blunt and chipped", "solenoid valve sticking",
         "air pressure down to {bar} bar", "loose terminal in the control panel", "label roll loaded outside the guide",
         "pneumatic cylinder seal leaking"),
        ("recalibrated the thermocouple against a reference probe", "replaced the cutter blade", "replaced the solenoid valve",
         "reset the regulator to 6 bar", "tightened the terminal and checked the circuit with a multimeter",
         "reloaded the label roll and ran {count} test labels", "replaced the cylinder seal kit"),
        ("1 x cutter blade ({part})", "1 x solenoid valve ({part})", "1 x thermocouple ({part})", "1 x cylinder seal kit"),
    ),
    "vehicles": (
        ("forklift FL-{n}", "the reach truck", "pallet truck PT-{n}"),
        ("mast drifting down under load", "hydraulic leak at the lift cylinder", "fault code E-{code} on the dash",
         "brakes pulling to one side", "traction battery not holding charge", "horn and beacon not working"),
        ("hydraulic hose chafed against the chassis", "lift cylinder seal worn", "fuse blown on the 24 V supply",
         "brake shoes worn below the limit", "two battery cells reading low", "loose connector behind the dash"),
        ("replaced the hose and bled the hydraulic circuit", "resealed the lift cylinder",
         "replaced the fuse and checked the circuit with a multimeter", "fitted new brake shoes and adjusted the cable",
         "equalised the traction battery and logged cell voltages", "remade the connector and function-tested the truck"),
        ("1 x hydraulic hose, 600 mm", "1 x lift cylinder seal kit", "1 x 5 A fuse", "brake shoe set ({part})",
         "hydraulic oil, 5 litres"),
    ),
    "doors": (
        ("the dock leveller at door {n}", "the roller shutter at door {n}", "the fast-action door at goods-in"),
        ("shutter stuck half open", "leveller lip not extending", "emergency stop not resetting",
         "door reversing before it closes", "grinding noise as the door opens"),
        ("limit switch bracket bent", "hydraulic pump motor tripping on overload", "safety edge cable damaged",
         "guide rail out of line by {mm} mm", "spring tension low"),
        ("adjusted the limit switch and cycled the door {count} times", "reset the overload and tested the pump under load",
         "replaced the safety edge cable", "realigned the guide rail and torqued the bolts to {nm} Nm",
         "tested the emergency stop circuit"),
        ("1 x limit switch ({part})", "1 x safety edge cable", "anchor bolts x 4"),
    ),
    "racking": (
        ("the pallet racking in aisle {aisle}", "the mezzanine shelving", "the carton flow rack in aisle {aisle}"),
        ("upright damaged by a pallet truck", "beam locking pin missing", "bay overloaded during a stock check",
         "damage flagged at the weekly inspection"),
        ("upright bent {mm} mm out of plumb", "base plate anchor bolts loose", "beam connector cracked",
         "load notice missing from the bay"),
        ("tagged out the damaged bay and offloaded the pallets", "torqued the anchor bolts to {nm} Nm",
         "replaced the beam locking pins", "fitted a new upright protector", "refitted the load notice"),
        ("anchor bolts x 4", "beam locking pins x 10", "1 x upright protector"),
    ),
    "building": (
        ("the air compressor", "the heater unit in goods-in", "the mezzanine goods lift",
         "the extract fan in the charging room"),
        ("compressor tripping the breaker", "heater blowing cold air", "goods lift stopping between floors",
         "extract fan running noisily"),
        ("intake filter blocked", "thermostat reading {deg} degrees out", "door interlock switch sticking",
         "fan bearing worn", "breaker undersized for the start-up current"),
        ("replaced the intake filter and drained the receiver", "recalibrated the thermostat",
         "cleaned and adjusted the door interlock", "fitted a new fan bearing", "swapped the breaker for the correct rating"),
        ("1 x intake filter ({part})", "1 x fan bearing", "1 x thermostat ({part})", "1 x 16 A breaker"),
    ),
}
_STATUS = ("Returned to service at {time}.", "Running under observation.",
           "Awaiting parts; running at reduced speed.", "Isolated and tagged out pending parts.",
           "Back in service after a test run.")
_FOLLOW_UP = ("Recommend a full inspection at the next planned stop.", "Recheck in one week.",
              "Order spares for stock.", "Operators briefed on clearing faults with the equipment isolated.",
              "Add to the quarterly inspection list.", "Raise with the OEM if the fault returns.",
              "Shift lead informed.", "No further action.")


def _domain_slots(world: World, rng: random.Random) -> dict[str, str]:
    return {"n": str(rng.randint(1, 8)), "aisle": rng.choice("ABCDEFGH"), "code": str(rng.randint(10, 89)),
            "mm": str(rng.randint(3, 12)), "deg": str(rng.randint(8, 30)), "bar": str(rng.randint(2, 4)),
            "amps": f"{rng.randint(9, 14)}.{rng.randint(0, 9)}", "rated": str(rng.choice((8, 9, 10))),
            "count": str(rng.choice((10, 20, 50, 100))), "nm": str(rng.choice((25, 35, 45, 60))),
            "part": f"{rng.randint(10, 99)}-{rng.randint(100, 999)}", "wo": str(rng.randint(10000, 99999)),
            "time": f"{rng.randint(6, 21):02d}:{rng.choice(('00', '15', '30', '45'))}",
            "site": f"{rng.choice(world.warehouses)} distribution centre", "tech": rng.choice(world.customers[:60]),
            "product": rng.choice(world.products).name, "date": _date(rng)}


def _field_report(world: World, rng: random.Random) -> str:
    s = _domain_slots(world, rng)
    kit, symptoms, findings, actions, parts = _PLANT[rng.choice(list(_PLANT))]

    def fill(pool: tuple[str, ...], k: int) -> list[str]:
        return [_fill(rng, x, **s) for x in rng.sample(pool, min(k, len(pool)))]

    lines = [
        say(rng, ("Field report WO-{wo}", "Work order WO-{wo}: field report", "Technician report, WO-{wo}"), **s),
        say(rng, ("Site: {site}. Technician: {tech}. Date: {date}, {time}.", "{site}, {date}, {time}. Technician: {tech}."), **s),
        f"Equipment: {_fill(rng, kit, **s)}.",
        say(rng, ("Fault reported: {sym}.", "Reported by shift lead: {sym}.", "Call-out for {sym}."), sym=_fill(rng, symptoms, **s))
        + say(rng, (" Line stopped while packing {product} cartons.", "", " Picking of {product} orders paused.", ""), **s),
        "Findings: " + "; ".join(fill(findings, rng.randint(1, 2))) + ".",
        "Action taken: " + "; ".join(["isolated the supply and applied lockout", *fill(actions, rng.randint(1, 3))]) + ".",
        "Parts used: " + (", ".join(fill(parts, rng.randint(1, 2))) if rng.random() < 0.8 else "none") + ".",
        say(rng, ("Downtime: {mins} min.", "Total downtime {mins} minutes."), mins=str(rng.randint(2, 30) * 5)),
        "Status: " + say(rng, _STATUS, **s) + " " + say(rng, _FOLLOW_UP),
    ]
    return "\n".join(lines)


def _maintenance_log(world: World, rng: random.Random) -> str:
    s = _domain_slots(world, rng)
    lines = [say(rng, ("Maintenance log, {site}, week {w}", "{site}: planned maintenance, week {w}",
                       "Engineering log - {site} - w/c {date}"), w=str(rng.randint(1, 52)), **s)]
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
    for day in sorted(rng.sample(days, rng.randint(3, 6)), key=days.index):
        s = {**s, **_domain_slots(world, rng)}
        kit, symptoms, findings, actions, _ = _PLANT[rng.choice(list(_PLANT))]
        act, act2 = rng.sample(actions, 2)
        entry = say(rng, ("{kit}: {act}.", "{kit} - {sym}; {find}. {Act}.", "PPM on {kit}: {act}, {act2}.",
                          "{kit}: {find}. {Act}. {status}"),
                    kit=_fill(rng, kit, **s), act=_fill(rng, act, **s), Act=say(rng, act, **s),
                    act2=_fill(rng, act2, **s), sym=_fill(rng, symptoms, **s), find=_fill(rng, findings, **s),
                    status=_fill(rng, _STATUS, **s))
        lines.append(f"{day} {s['time']} {entry} ({''.join(w[0] for w in s['tech'].split())})")
    return "\n".join(lines)


def domain_documents(world: World, n_docs: int, seed: int) -> Iterator[str]:
    """Held-out text in the same world that `corpus_documents` never produces: field and maintenance logs."""
    rng = random.Random(f"domain:{seed}")
    for _ in range(n_docs):
        yield (_field_report if rng.random() < 0.6 else _maintenance_log)(world, rng)


# ----------------------------------------------------------------------------- task data sets

SENTIMENT_LABELS = ("negative", "neutral", "positive")
_STARS = {"negative": (1, 2), "neutral": (3,), "positive": (4, 5)}


def _balanced(rng: random.Random, labels: tuple[str, ...], n: int) -> list[str]:
    """n labels, as equal in count as n allows, in random order."""
    out = [labels[i % len(labels)] for i in range(n)]
    rng.shuffle(out)
    return out


def sentiment_records(world: World, n: int, seed: int) -> list[dict]:
    """Product reviews {"text", "label", "score"}; balanced labels, no explicit rating in the text."""
    rng = random.Random(f"sentiment:{seed}")
    records = []
    for label in _balanced(rng, SENTIMENT_LABELS, n):
        stars = tone = rng.choice(_STARS[label])
        if rng.random() < 0.1:  # reviewers whose rating is kinder or harsher than their words
            tone = {1: 2, 2: 3, 3: rng.choice((2, 4)), 4: 3, 5: 4}[stars]
        text = " ".join(_review_lines(world, rng, rng.choice(world.products), tone))
        records.append({"text": text, "label": label, "score": float(stars)})
    return records


_INTENTS: dict[str, tuple[str, ...]] = {
    "order_status": (
        "Where is my order {number}?", "My parcel still hasn't arrived. Order {number}.",
        "I ordered the {name} {when} and haven't heard anything since.", "Has my order shipped yet? The number is {number}.",
        "Can you tell me when order {number} will arrive?", "The tracking for {number} hasn't updated in [three|four|five] days.",
        "Is my {noun} on its way? I ordered it on {date}.", "Could you check the status of order {number} for me?",
        "It's been a week since I placed order {number}. Any news?", "I need the {name} by {day}. Will order {number} get here in time?",
        "When will the {name} I ordered be delivered?", "Order {number} says processing. Is that normal?"),
    "return_request": (
        "I'd like to return the {name}. [It's too small.|It doesn't fit.|I changed my mind.]",
        "How do I send back the {name} from order {number}?", "Can I get a return label for order {number}?",
        "The {name} isn't what I expected, so I want to send it back.",
        "Please arrange a return for the {name}. It's unused and still in the box.",
        "{Relative} gave me the {name} but I already have one. Can I return it without a receipt?",
        "I want my money back for the {name}. I haven't used it.", "Is it too late to return the {name}? I got it {when}.",
        "I need to swap the {name} for a bigger size.", "The {name} is the wrong colour for me. How do I return it?",
        "I'm sending back order {number}. Do I need to fill in a form?"),
    "shipping_question": (
        "How much is delivery to {town}?", "Do you ship to {town}, and how long does it take?",
        "Is shipping free if I spend over {free_shipping_threshold}?", "What's the fastest delivery option you have?",
        "Can I get express delivery on the {name}?", "Do you deliver on Saturdays?",
        "How long does standard delivery usually take?", "Can I collect an order from your {store} shop instead of having it delivered?",
        "Do you ship abroad?", "Which courier do you use for big items like tents?",
        "If I order the {name} today, when would it get to me?", "Can I choose a delivery day?"),
    "product_question": (
        "Is the {name} waterproof?", "Does the {name} come in any other colours?", "What is the {name} made of?",
        "How heavy is the {name}?", "Is the {name} suitable for {use}?", "What's the difference between the {name} and the {name2}?",
        "Does the {name} come with a warranty?", "Can the {name} go in the washing machine?",
        "Is the {name} back in stock yet?", "Would the {name} cope with {weather}?",
        "What size {noun} would you recommend for someone who is six foot tall?", "Does the {name} have {feature}?"),
    "billing_issue": (
        "I was charged twice for order {number}.", "My card was charged but I never got an order confirmation.",
        "The discount code didn't apply at checkout.", "I returned the {name} [two|three] weeks ago and still haven't been refunded.",
        "The amount on my statement doesn't match my order total.",
        "Why was I charged {shipping_fee} for shipping when my order was over {free_shipping_threshold}?",
        "I forgot to use my student discount. Can you refund the difference?",
        "Can I get a VAT invoice for order {number}?", "My payment keeps getting declined even though my card is fine.",
        "There's a charge from {short} on my card that I don't recognise.", "I was charged the full price for the {name} but it was on sale."),
    "cancel_order": (
        "Please cancel order {number}.", "I placed an order by mistake. Can you cancel it before it ships?",
        "Can I still cancel my order? I only placed it [an hour|twenty minutes|half an hour] ago.",
        "I don't need the {name} any more. Please stop the order.", "I ordered the wrong colour. Please cancel {number} and I'll order again.",
        "Cancel my order, please. I found it locally.", "How do I cancel an order I just placed?",
        "I accidentally ordered the {name} twice. Can you cancel one of them?", "Stop order {number}, please. I've changed my mind.",
        "Is it too late to cancel {number}?"),
    "complaint": (
        "I'm really unhappy with the {name}. {Fault}.", "Your driver left my parcel out in the rain and everything got soaked.",
        "This is the second time my order has arrived damaged. Not good enough.", "I waited forty minutes on the phone and nobody answered.",
        "The staff at your {store} shop were rude to me yesterday.", "The {name} fell apart after one trip. I expected much better from {short}.",
        "Nobody has replied to my emails for a week. This is unacceptable.", "The {name} looks nothing like the photos on your website.",
        "I was promised a call back and never got one.", "A small {noun} came in a huge box full of plastic. Do better.",
        "{Fault} on my {name}, and your website is useless for reporting it."),
    "account_help": (
        "I can't log in to my account.", "How do I reset my password?", "I want to change the email address on my account.",
        "Please delete my account and all my data.", "I'm not getting your emails any more. Can you check my account?",
        "How do I join the {loyalty_scheme}?", "My {loyalty_scheme} points aren't showing in my account.",
        "Can I merge two accounts? I made a second one by accident.", "How do I update my saved delivery address?",
        "I keep getting an error when I try to sign in.", "Please unsubscribe me from your newsletter."),
}
INTENT_LABELS = tuple(_INTENTS)


def _unseen(seen: set[str], text: str) -> bool:
    """True (and remembered) unless `text` repeats an earlier record's, as tailor's duplicate check compares them
    (ignoring case, punctuation and spacing): generated data sets hold no accidental duplicates."""
    norm = normalize_text(text)
    if norm in seen:
        return False
    seen.add(norm)
    return True


_TRIES = 200  # draws for a record that is not a copy of an earlier one (then a copy is kept)


def intent_records(world: World, n: int, seed: int) -> list[dict]:
    """Customer support messages {"text", "label"} over the intents in `INTENT_LABELS`, balanced, all different."""
    rng = random.Random(f"intent:{seed}")
    records, seen = [], set[str]()
    for label in _balanced(rng, INTENT_LABELS, n):
        for _ in range(_TRIES):
            text = _intent_message(world, rng, label)
            if _unseen(seen, text):
                break
        records.append({"text": text, "label": label})
    return records


def _intent_message(world: World, rng: random.Random, label: str) -> str:
    """One customer message with the given intent."""
    p, p2 = rng.sample(world.products, 2)
    o = rng.choice(world.orders)
    fault = _fill(rng, rng.choice(_faults(p)))
    s = {**_slots(world), "number": o.number, "name": p.name, "name2": p2.name, "noun": p.noun,
         "use": _CATALOGUE[p.category]["uses"], "feature": p.features, "date": _date(rng),
         "town": _TOWNS, "store": world.stores, "Fault": fault[:1].upper() + fault[1:],
         "day": ("Friday", "the weekend", "Monday", "next week"),
         "Relative": ("My sister", "My dad", "A friend", "My partner", "My aunt")}
    text = say(rng, _INTENTS[label], **s)
    if rng.random() < 0.35:
        text = _lead(say(rng, ("{hello}, ", "Hi team, ", "Hello {short}, ", "{hello}. "), **s), text)
    if rng.random() < 0.3:
        text += say(rng, (" {thanks}.", " {thanks}!", " {thanks}, {first}", " Please help."),
                    first=o.customer.split()[0])
    return text


SYSTEM_PROMPT = ("You are the customer support assistant for {company}. Answer questions about products, "
                 "prices, orders and policies in one short sentence.")


def _chat_turn(world: World, rng: random.Random, last: Product | None, asked: list[str]) -> tuple[str, str, Product | None]:
    """One (question, answer) pair about a fact not yet asked; a follow-up on the last product may say "it"."""
    kind = rng.choices(("product", "policy", "order"), (6, 4, 2))[0]
    if kind == "product":
        p = last if last is not None and rng.random() < 0.6 else rng.choice(world.products)
        key = rng.choice([k for k in PRODUCT_FACTS[:5] if f"{k}:{p.name}" not in asked])
        asked.append(f"{key}:{p.name}")
        the_p = "it" if p is last and rng.random() < 0.7 else f"the {p.name}"
        return _ask(rng, key, world, the_p=the_p), _answer(world, key, p), p
    if kind == "policy":
        key = rng.choice([k for k in POLICY_FACTS if k not in asked])
        asked.append(key)
        return _ask(rng, key, world), _answer(world, key), None
    o = rng.choice(world.orders)
    return _ask(rng, "order_status", world, number=o.number), _answer(world, "", order=o), None


def support_chat_records(world: World, n: int, seed: int) -> list[dict]:
    """Chats {"messages": [system, user, assistant, ...]}, 1-3 turns, answers in fixed phrasing."""
    rng = random.Random(f"chat:{seed}")
    system = {"role": "system", "content": SYSTEM_PROMPT.format(company=world.company)}
    records, seen = [], set[str]()
    for _ in range(n):
        for _ in range(_TRIES):
            messages = _chat(world, rng, system)
            if _unseen(seen, "\n".join(m["content"] for m in messages[1:])):
                break
        records.append({"messages": messages})
    return records


def _chat(world: World, rng: random.Random, system: dict) -> list[dict]:
    """One conversation: the system prompt, then 1-3 (question, answer) turns."""
    messages, last, asked = [system], None, list[str]()
    for i in range(rng.choice((1, 1, 2, 2, 3))):
        question, answer, last = _chat_turn(world, rng, last, asked)
        if i == 0 and rng.random() < 0.3:
            question = _lead(say(rng, "{hello}, "), question)
        elif i and rng.random() < 0.5:
            question = _lead(rng.choice(("And ", "Thanks. ", "Also, ", "OK. ")), question)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


_QA_QUESTIONS = {
    "price": ("How much does the {p} cost?", "What is the price of the {p}?", "How much is the {p}?",
              "What does the {p} sell for?"),
    "colour": ("What colour is the {p}?", "Which colour does the {p} come in?", "In what colour is the {p} sold?"),
    "material": ("What is the {p} made of?", "Which material is the {p} made from?", "What material is used for the {p}?"),
    "warranty": ("How long is the warranty on the {p}?", "How long is the {p} guaranteed for?",
                 "What warranty period covers the {p}?"),
    "sku": ("What is the SKU of the {p}?", "Which product code does the {p} have?"),
    "return_window_days": ("How long do customers have to return an item?", "What is the return window?",
                           "Within how long of delivery can an unused item be returned?"),
    "refund_days": ("How long does a refund take to process?", "How soon is a refund issued after a return arrives?"),
    "shipping_fee": ("How much does standard shipping cost?", "What is the fee for standard delivery?"),
    "free_shipping_threshold": ("Above what order value is shipping free?", "How much must an order be worth to ship free?"),
    "standard_delivery": ("How long does standard delivery take?", "How quickly do standard parcels arrive?"),
    "express_fee": ("How much does express shipping cost?", "What is the price of express delivery?"),
    "express_delivery": ("How long does express delivery take?", "How fast do express orders arrive?"),
    "support_hours": ("At what times is the support team available?", "What are the support team's hours?"),
    "support_days": ("On which days is the support team available?", "Which days of the week is support open?"),
    "support_email": ("What email address can customers write to?", "How can customers contact support by email?"),
    "cancel_window_hours": ("How long after placing an order can it be cancelled?", "What is the window for cancelling an order?"),
    "price_match_days": ("How long does the price match promise last?", "Within how long of buying can a price match be claimed?"),
    "repair_days": ("How long do repairs usually take?", "How quickly is mended gear sent back?"),
    "student_discount": ("How much discount do students get?", "What is the student discount?"),
    "gift_card_years": ("How long are gift cards valid?", "For how long can a gift card be spent?"),
    "loyalty_scheme": ("What is the loyalty scheme called?", "What is the name of the loyalty scheme?"),
    "loyalty_points": ("How many points do members earn per dollar?", "What do members earn for every dollar they spend?"),
}


def _qa_document(world: World, rng: random.Random) -> list[Paragraph]:
    if rng.random() < 0.5:
        return _product_paragraphs(world, rng, rng.choice(world.products))
    out: list[Paragraph] = []
    for topic in rng.sample(list(_POLICY_TOPICS), rng.choice((1, 2))):
        out += _policy_paragraphs(world, rng, topic)
    return out


def _qa_context(world: World, rng: random.Random, long: bool) -> list[Paragraph]:
    paragraphs = _qa_document(world, rng)
    if not long:
        return paragraphs
    docs, words, target = [paragraphs], len(_text(paragraphs).split()), rng.randint(650, 1300)
    while words < target:
        doc = (_qa_document(world, rng) if rng.random() < 0.8
               else [(" ", [(x, {})]) for x in _news_doc(world, rng).split("\n\n")])
        n = len(_text(doc).split())
        if words + n > 1500:
            break
        docs.append(doc)
        words += n
    rng.shuffle(docs)
    return [x for d in docs for x in d]


def _qa_question(world: World, rng: random.Random, context: str, facts: list) -> tuple[str, str, int]:
    """A question with its answer span; ("", "", -1) answer when unanswerable from `context`."""
    if not facts:
        missing = [p for p in world.products if p.name not in context]
        fact = rng.choice(("price", "colour", "material", "warranty"))
        return say(rng, _QA_QUESTIONS[fact], p=rng.choice(missing).name), "", -1
    key, value, start = rng.choice(facts)
    fact, _, product = key.partition(":")
    return say(rng, _QA_QUESTIONS[fact], p=product), value, start


def qa_records(world: World, n: int, seed: int, long_contexts: bool = False,
               unanswerable: bool = False, seen: set[str] | None = None) -> list[dict]:
    """SQuAD-style extractive QA over policy pages and product pages (long: several joined, 600-1500 words);
    no two ask the same question of the same page (nor of a page in `seen`, which receives theirs)."""
    rng = random.Random(f"qa:{seed}:{long_contexts}:{unanswerable}")
    records: list[dict] = []
    seen = set[str]() if seen is None else seen
    while len(records) < n:
        context, facts = _assemble(_qa_context(world, rng, long_contexts))
        if unanswerable and rng.random() < 0.1:
            facts = []
        elif not facts:
            continue
        question, answer, start = _qa_question(world, rng, context, facts)
        if not _unseen(seen, f"{question}\n{context}"):  # the same question on the same page: draw again
            continue
        assert start < 0 or context[start : start + len(answer)] == answer, (answer, start)
        records.append({
            "id": f"qa-{'long-' if long_contexts else ''}{seed}-{len(records):05d}", "context": context,
            "question": question,
            "answers": {"text": [answer], "answer_start": [start]} if answer else {"text": [], "answer_start": []},
        })
    return records


# ----------------------------------------------------------------------------- files


def _write_jsonl(path: Path, rows: list[dict] | Iterator[dict]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_corpus(path: str | Path, n_docs: int, seed: int = 0) -> Path:
    """Writes corpus_documents(build_world(0), n_docs, seed) as JSONL {"text": ...}, one document per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_jsonl(path, ({"text": d} for d in corpus_documents(build_world(0), n_docs, seed)))


def write_demo_data(out_dir: str | Path, seed: int = 1) -> dict[str, Path]:
    """Writes the demo data sets used by the example recipes; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(0)
    seen = set[str]()
    qa = qa_records(world, 600, seed, seen=seen) + qa_records(world, 200, seed, long_contexts=True, seen=seen)
    random.Random(f"demo:{seed}").shuffle(qa)
    paths = {
        "reviews": _write_jsonl(out / "reviews.jsonl", sentiment_records(world, 1200, seed)),
        "intents": _write_jsonl(out / "intents.jsonl", intent_records(world, 1200, seed)),
        "support_chat": _write_jsonl(out / "support_chat.jsonl", support_chat_records(world, 1000, seed)),
        "policy_qa": _write_jsonl(out / "policy_qa.jsonl", qa),
        "field_notes": out / "field_notes.txt",
    }
    paths["field_notes"].write_text("\n\n".join(domain_documents(world, 400, seed)) + "\n", encoding="utf-8")
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tailor.data.synthetic OUT_DIR")
    for name, written in write_demo_data(sys.argv[1]).items():
        print(f"{name}: {written}")
