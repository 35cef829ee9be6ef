"""Generate the small text resources zoo ships (deterministic for the seed):

* zoo/resources/ner/ner_demo_{train,test}.iob2: template sentences with PER / ORG / LOC / MONEY entities,
  multi-word names and amounts, in IOB2 (``token tag`` per line, blank line between sentences);
* zoo/resources/text/tickets_multilabel.csv: support tickets labelled with 1-3 of billing / technical /
  account / shipping / refund, ``|``-separated.

    python scripts/make_text_resources.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zoo" / "resources"

FIRST = ["John", "Mary", "Aisha", "Carlos", "Wei", "Fatima", "Olga", "Peter", "Sofia", "Kenji", "Amara", "Lukas",
         "Priya", "Diego", "Hannah", "Tomasz", "Yusuf", "Elena", "Noah", "Ines"]
LAST = ["Smith", "Okafor", "Garcia", "Chen", "Haddad", "Ivanova", "Novak", "Rossi", "Tanaka", "Mensah", "Weber",
        "Sharma", "Lopez", "Fischer", "Kowalski", "Demir", "Petrova", "Brown", "Silva", "Nakamura"]
ORGS = ["Acme Corp", "Globex", "Initech", "Northwind Traders", "Umbrella Holdings", "Stark Industries",
        "Wayne Enterprises", "Contoso Bank", "Fabrikam", "Tyrell Systems", "Blue Harbor Capital", "Vandelay Imports",
        "Oceanic Airlines", "Cyberdyne", "Hooli"]
LOCS = ["Paris", "London", "Berlin", "New York", "Lagos", "Tokyo", "Sao Paulo", "Mumbai", "Cairo", "Toronto",
        "Buenos Aires", "Warsaw", "Istanbul", "Nairobi", "San Francisco", "Hong Kong"]
CURRENCY = ["dollars", "euros", "pounds", "yen"]

TEMPLATES = [
    "{PER} joined {ORG} in {LOC} last year .",
    "{ORG} paid {MONEY} to settle the claim filed by {PER} .",
    "Yesterday {PER} flew from {LOC} to {LOC} to meet {PER} .",
    "{ORG} opened a new office in {LOC} .",
    "Shares of {ORG} fell after {PER} resigned .",
    "{PER} said the deal with {ORG} was worth {MONEY} .",
    "The court in {LOC} fined {ORG} {MONEY} .",
    "According to {PER} , {ORG} will hire 200 engineers in {LOC} .",
    "{PER} and {PER} founded {ORG} in {LOC} .",
    "Investors gave {ORG} {MONEY} on Monday .",
    "The mayor of {LOC} thanked {PER} for the donation of {MONEY} .",
    "{ORG} reported revenue of {MONEY} this quarter .",
    "Nobody expected the storm in {LOC} to last so long .",
    "{PER} works as an analyst at {ORG} .",
]


def _entity(kind: str, rng: random.Random) -> list[str]:
    if kind == "PER":
        return [rng.choice(FIRST)] + ([rng.choice(LAST)] if rng.random() < 0.7 else [])
    if kind == "ORG":
        return rng.choice(ORGS).split()
    if kind == "LOC":
        return rng.choice(LOCS).split()
    amount = rng.choice([f"{rng.randint(2, 950)}", f"{rng.randint(1, 99)}.{rng.randint(1, 9)}",
                         "$" + str(rng.randint(5, 900))])
    words = [amount]
    if rng.random() < 0.5:
        words.append(rng.choice(["million", "billion", "thousand"]))
    if not amount.startswith("$"):
        words.append(rng.choice(CURRENCY))
    return words


def ner_sentence(rng: random.Random) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for piece in rng.choice(TEMPLATES).split():
        if piece.startswith("{") and piece.endswith("}"):
            kind = piece[1:-1]
            words = _entity(kind, rng)
            out += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
        else:
            out.append((piece, "O"))
    return out


def write_ner(path: Path, n: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(n):
        lines += [f"{w} {t}" for w, t in ner_sentence(rng)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


TICKET_PHRASES = {
    "billing": ["I was charged twice this month", "my invoice shows the wrong amount", "the card payment failed",
                "why is there an extra fee on my bill", "please update my billing address",
                "the subscription price went up"],
    "technical": ["the app crashes when I open settings", "I get error 500 on the dashboard", "the page will not load",
                  "sync stopped working after the update", "the export button does nothing",
                  "notifications never arrive"],
    "account": ["I cannot log in to my account", "please reset my password", "how do I change my email address",
                "my account was locked", "I want to delete my profile", "two-factor codes are not accepted"],
    "shipping": ["my package has not arrived", "the tracking number does not work",
                 "the parcel went to the wrong address",
                 "delivery is two weeks late", "the courier left the box outside", "can you ship to another country"],
    "refund": ["I want my money back", "please refund the order", "the refund has not reached my card",
               "I returned the item but got no refund", "cancel and refund my purchase", "how long does a refund take"],
}
OPENERS = ["Hello,", "Hi team,", "Dear support,", "Urgent:", "", "Good morning,"]
CLOSERS = ["Thanks.", "Please help.", "Regards.", "", "This is frustrating.", "Thank you in advance."]


def write_tickets(path: Path, n: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    labels_all = list(TICKET_PHRASES)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "labels"])
        for _ in range(n):
            k = rng.choices([1, 2, 3], weights=[0.5, 0.35, 0.15])[0]
            labels = sorted(rng.sample(labels_all, k))
            parts = [rng.choice(TICKET_PHRASES[lab]) for lab in labels]
            rng.shuffle(parts)
            text = " ".join(x for x in [rng.choice(OPENERS), " and ".join(parts) + ".", rng.choice(CLOSERS)] if x)
            writer.writerow([text, "|".join(labels)])


def main() -> None:
    rng = random.Random(20261123)
    write_ner(ROOT / "ner" / "ner_demo_train.iob2", 800, rng)
    write_ner(ROOT / "ner" / "ner_demo_test.iob2", 200, rng)
    write_tickets(ROOT / "text" / "tickets_multilabel.csv", 900, rng)


if __name__ == "__main__":
    main()
