"""The demo dataset: short news-like sentences in four topics, generated from varied templates.

Generated (not copied from any corpus) with a fixed seed; the committed files in
examples/data/topics/ are the output of ``write_topics(folder)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "sports": {
        "subjects": [
            "the striker",
            "our goalkeeper",
            "the home team",
            "the young sprinter",
            "the tennis champion",
            "the coach",
            "the cycling squad",
            "the rookie quarterback",
            "the boxing veteran",
            "the relay team",
        ],
        "actions": [
            "scored twice in the final minutes",
            "won the championship after extra time",
            "broke the national record",
            "was injured during practice",
            "signed a three-year contract",
            "lost the semi-final on penalties",
            "trained hard before the derby",
            "celebrated a late equaliser",
            "qualified for the olympic games",
            "missed the decisive free kick",
        ],
        "places": [
            "at the stadium",
            "in the league match",
            "on the track",
            "during the tournament",
            "at the arena",
        ],
    },
    "technology": {
        "subjects": [
            "the startup",
            "a software engineer",
            "the chip maker",
            "the new smartphone",
            "the research lab",
            "the cloud provider",
            "an open source project",
            "the robotics team",
            "the app",
            "the browser",
        ],
        "actions": [
            "released a faster processor",
            "patched a security vulnerability",
            "launched a new operating system",
            "trained a larger language model",
            "raised funding for its platform",
            "recalled faulty batteries",
            "shipped an update to the database",
            "announced a quantum computing prototype",
            "suffered a data centre outage",
            "open sourced its compiler",
        ],
        "places": [
            "at the developer conference",
            "in a blog post",
            "on its servers",
            "in the product keynote",
            "for its users",
        ],
    },
    "food": {
        "subjects": [
            "the chef",
            "a family bakery",
            "the new bistro",
            "my grandmother",
            "the street vendor",
            "the pastry cook",
            "the vegan cafe",
            "the pizzeria",
            "a food critic",
            "the cheese maker",
        ],
        "actions": [
            "baked sourdough bread with rye flour",
            "served a spicy lentil soup",
            "roasted garlic and tomatoes",
            "invented a chocolate dessert",
            "grilled fresh sardines with lemon",
            "simmered the curry for hours",
            "opened a dumpling kitchen",
            "praised the creamy risotto",
            "fermented cabbage for kimchi",
            "whisked eggs for a fluffy omelette",
        ],
        "places": ["in the kitchen", "at the market", "for dinner", "on the menu", "at the restaurant"],
    },
    "travel": {
        "subjects": [
            "the backpacker",
            "a tour guide",
            "the airline",
            "our family",
            "the cruise ship",
            "the hikers",
            "the hotel",
            "a travel blogger",
            "the train company",
            "the tourists",
        ],
        "actions": [
            "booked a flight to the islands",
            "explored the old harbour",
            "missed the connecting train",
            "climbed to the mountain village",
            "reopened the coastal route",
            "lost a suitcase at the airport",
            "added night trains across the border",
            "visited the ancient temples",
            "camped beside the lake",
            "renewed passports before the trip",
        ],
        "places": ["during the holidays", "on the journey", "abroad", "last summer", "near the border"],
    },
}
FRAMES = [
    "{s} {a} {p}.",
    "Yesterday {s} {a}.",
    "Reports say {s} {a} {p}.",
    "{S} {a}, according to local news.",
    "Everyone was talking about how {s} {a}.",
    "It was a surprise when {s} {a} {p}.",
    "{S} reportedly {a}.",
    "In a short statement, {s} {a} {p}.",
]


def generate(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows = []
    for i in range(n):
        label = names[i % len(names)]
        t = TOPICS[label]
        s, a, p = rng.choice(t["subjects"]), rng.choice(t["actions"]), rng.choice(t["places"])
        text = rng.choice(FRAMES).format(s=s, S=s[0].upper() + s[1:], a=a, p=p)
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def write_topics(folder: Path, n_train: int = 1200, n_validation: int = 400) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, n, seed in (("train", n_train, 0), ("validation", n_validation, 1)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in generate(n, seed)), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


PEOPLE = [
    "Alice Martin",
    "Bob",
    "Chen Wei",
    "Dana Scott",
    "Emeka Obi",
    "Fatima",
    "Giulia Rossi",
    "Hiro Tanaka",
]
CITIES = ["Paris", "Lagos", "Osaka", "Toronto", "Lima", "Berlin", "Nairobi", "Quito"]
ORGS = ["Acme Corp", "the United Nations", "Globex", "Initech", "the Red Cross", "Umbrella Labs"]
NER_FRAMES = [
    "{P} moved to {C} to work for {O} .",
    "{O} opened an office in {C} .",
    "Yesterday {P} visited {C} .",
    "{P} and {P2} met at {O} headquarters in {C} .",
    "A spokesperson for {O} said {P} will speak in {C} .",
]


def _tagged(text: str, kind: str) -> list[tuple[str, str]]:
    words = text.split()
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def generate_ner(n: int, seed: int) -> list[dict[str, list[str]]]:
    """Sentences with PER / LOC / ORG entities and IOB2 tags."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        frame = rng.choice(NER_FRAMES)
        fill = {
            "P": (rng.choice(PEOPLE), "PER"),
            "P2": (rng.choice(PEOPLE), "PER"),
            "C": (rng.choice(CITIES), "LOC"),
            "O": (rng.choice(ORGS), "ORG"),
        }
        pairs: list[tuple[str, str]] = []
        for word in frame.split():
            key = word.strip("{}")
            if word.startswith("{") and key in fill:
                pairs += _tagged(*fill[key])
            else:
                pairs.append((word, "O"))
        rows.append({"tokens": [w for w, _ in pairs], "tags": [t for _, t in pairs]})
    return rows


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def generate_numbers(n: int, seed: int) -> list[dict[str, str]]:
    """Number words -> digits, a tiny translation-like seq2seq task."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randrange(2, 7))]
        rows.append(
            {"source": " ".join(DIGITS[d] for d in digits), "target": "".join(str(d) for d in digits)}
        )
    return rows


CHAT_QUESTIONS = [
    "Which topic is this sentence about? {text}",
    "Classify the topic (sports, technology, food or travel): {text}",
    "{text}\nWhat is this about, in one word?",
]


def generate_chat(n: int, seed: int) -> list[dict[str, list[dict[str, str]]]]:
    """Chat records (``messages``: a user question about a topic sentence, the assistant's answer)."""
    rng = random.Random(seed)
    rows = []
    for row in generate(n, seed):
        question = rng.choice(CHAT_QUESTIONS).format(text=row["text"])
        answer = f"It is about {row['label']}."
        rows.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        )
    return rows


def write_examples(root: Path) -> None:
    """examples/data/{topics,ner,numbers,chat}: the small generated datasets the example configs use."""
    write_topics(root / "topics")
    for name, gen in (("ner", generate_ner), ("numbers", generate_numbers), ("chat", generate_chat)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for split, n, seed in (("train", 600, 0), ("validation", 150, 1)):
            rows = gen(n, seed)
            (root / name / f"{split}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
            )
