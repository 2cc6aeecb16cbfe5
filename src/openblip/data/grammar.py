"""Reference captions for a scene graph: five paraphrases from a small grammar over `vocab`.

Every caption is true of its scene (the tests check each fact), lowercase with no final full stop,
like BLIP's COCO captions. Five template families: a listing of every object, a count of a group
of identical objects, a relation between two objects, an object's position, the background.
Reference 0 is always a complete listing, so one caption per image names every object.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from openblip.data.scene import Kind, SceneGraph, relation_holds
from openblip.data.vocab import BACKGROUNDS, NUMBER_WORDS, PLURALS, RELATION_PHRASES, RELATIONS

NUM_REFERENCES = 5


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(kind: Kind, count: int, size: str | None = None, definite: bool = False) -> str:
    """ "a small red circle", "the red circle", "two large blue stars"."""
    colour, shape = kind
    words = [w for w in (size, colour) if w]
    if count == 1:
        words.append(shape)
        det = "the" if definite else article(words[0])
    else:
        words.append(PLURALS[shape])
        det = NUMBER_WORDS[count]
    return " ".join([det, *words])


def position_phrase(region: str, rng: np.random.Generator) -> str:
    """ "in the top left corner", "at the top", "on the left", "in the centre"."""
    if region == "centre":
        return "in the centre" if rng.random() < 0.5 else "in the middle"
    if " " in region:
        return f"in the {region} corner" if rng.random() < 0.5 else f"at the {region}"
    if region in ("left", "right"):
        return f"on the {region}"
    return f"at the {region}"


def join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(0, len(options)))]


class _Scene:
    """What the templates need to know about a scene, computed once."""

    def __init__(self, scene: SceneGraph) -> None:
        self.scene = scene
        self.kinds = scene.kinds()
        self.singletons = [idx[0] for idx in self.kinds.values() if len(idx) == 1]
        self.groups = [(k, len(idx)) for k, idx in self.kinds.items() if len(idx) > 1]
        self.bg = BACKGROUNDS[scene.background]

    def size_of(self, kind: Kind) -> str:
        return self.scene.objects[self.kinds[kind][0]].size

    def listing(self, rng: np.random.Generator) -> tuple[str, bool]:
        """All objects, each kind once; returns the phrase and whether its first item is plural."""
        items = []
        for kind, idx in self.kinds.items():
            size = self.size_of(kind) if rng.random() < 0.5 else None
            items.append((noun_phrase(kind, len(idx), size), len(idx) > 1))
        shuffled = [items[int(i)] for i in rng.permutation(len(items))]
        return join_list([phrase for phrase, _ in shuffled]), shuffled[0][1]


def _listing_captions(s: _Scene, rng: np.random.Generator) -> list[str]:
    out = []
    for _ in range(6):
        body, plural = s.listing(rng)
        prefix = _pick(rng, ["", "there are " if plural else "there is ", "an image of ", "a picture of "])
        suffix = _pick(rng, ["", f" on a {s.bg} background", f" against a {s.bg} background"])
        out.append(prefix + body + suffix)
    return out


def _count_captions(s: _Scene, rng: np.random.Generator) -> list[str]:
    out = []
    for kind, n in s.groups:
        np_ = noun_phrase(kind, n, s.size_of(kind) if rng.random() < 0.5 else None)
        out += [f"{np_} on a {s.bg} background", f"there are {np_}", f"{np_} in the picture"]
    return out


def _relation_captions(s: _Scene, rng: np.random.Generator) -> list[str]:
    objs = s.scene.objects
    out = []
    for i in s.singletons:
        for j in s.singletons:
            for rel in RELATIONS:
                if i == j or not relation_holds(objs[i], rel, objs[j]):
                    continue
                a, b = noun_phrase(objs[i].kind, 1), noun_phrase(objs[j].kind, 1)
                the_a, the_b = noun_phrase(objs[i].kind, 1, definite=True), noun_phrase(objs[j].kind, 1, definite=True)
                phrase = RELATION_PHRASES[rel]
                out.append(_pick(rng, [f"{a} {phrase} {b}", f"{the_a} is {phrase} {the_b}"]))
    return out


def _position_captions(s: _Scene, rng: np.random.Generator) -> list[str]:
    out = []
    for i in s.singletons:
        o = s.scene.objects[i]
        np_ = noun_phrase(o.kind, 1, o.size if rng.random() < 0.7 else None)
        where = position_phrase(o.region, rng)
        out.append(_pick(rng, [f"there is {np_} {where}", f"{np_} {where}", f"{where} there is {np_}"]))
    return out


def _background_captions(s: _Scene, rng: np.random.Generator) -> list[str]:
    body, _ = s.listing(rng)
    return [f"a {s.bg} background with {body}"]


_FAMILIES: tuple[Callable[[_Scene, np.random.Generator], list[str]], ...] = (
    _count_captions,
    _relation_captions,
    _position_captions,
    _background_captions,
)


def reference_captions(scene: SceneGraph, rng: np.random.Generator) -> tuple[str, ...]:
    """Five distinct captions: a complete listing first, then one from each template family in
    turn (in random order), topped up with further listings."""
    s = _Scene(scene)
    listings = list(dict.fromkeys(_listing_captions(s, rng)))
    chosen = [listings.pop(0)]
    pools = [family(s, rng) for family in _FAMILIES]
    for f in rng.permutation(len(pools)):
        pool = [c for c in pools[int(f)] if c not in chosen]
        if pool and len(chosen) < NUM_REFERENCES:
            chosen.append(_pick(rng, pool))
    while len(chosen) < NUM_REFERENCES:
        extra = [c for c in listings if c not in chosen]
        if extra:
            chosen.append(_pick(rng, extra))
        else:  # tiny scenes can exhaust the listings' paraphrases: draw more
            listings = _listing_captions(s, rng)
    return tuple(chosen)
