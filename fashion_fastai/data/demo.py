"""Built-in synthetic demo data set in the layout of Kaggle's "Fashion Product Images (Small)".

Why: the app and its tests must run without downloading the real ~600 MB data set. The demo
is deterministic, small and fast to generate, and it reproduces the *traps* of the real data so
that the loader's handling of them is exercised:

1. "Perfume and Body Mist" is a top-20 class (by row count) whose rows are all in odd years,
   i.e. it has no training image at all.
2. Rare classes that occur in only one split (test-only and train-only) next to rare classes
   present in both.
3. About 2% greyscale (mode "L") JPEGs among the RGB ones.
4. Rows whose image file does not exist.
5. `productDisplayName` values containing commas, written unquoted, so those CSV lines have
   extra fields (as in the original `styles.csv`).
6. A row with an empty `year`.

Split convention (same as the app): even `year` = train, odd `year` = test.

Each article type is drawn as a simple product silhouette whose class is identifiable from
its *shape*; colour is random (and recorded as `baseColour`), with jitter of position, scale,
rotation and mild pixel noise so the task is learnable but not trivial.

Importing this module needs only numpy and Pillow (no torch/fastai), so it stays cheap; the column names come from
`data.COLUMNS` when the files are written.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashion_fastai.core.cache import cache_root
from fashion_fastai.core.schema import COLUMNS

__all__ = ["DEMO_CLASSES", "generate_demo", "demo_dir"]

_VERSION = "v1"  # bump whenever the generated content changes, so stale caches are not reused
_W, _H = 60, 80  # image size of the Kaggle "small" variant (PIL size: width, height)
_SS = 3  # supersampling factor: draw at 3x and box-downscale for anti-aliasing
_MIN_FREQUENT, _MIN_RARE = 12, 2  # per-class minimum counts; 12 > any rare count below scale 0.38
_EVEN_YEARS, _ODD_YEARS = (2012, 2014, 2016, 2018), (2011, 2013, 2015, 2017)
_P_EVEN = 0.565  # share of even (train) years in classes present in both splits

# ---------------------------------------------------------------------------------------------
# Drawing helpers. Shapes are described in image pixel units relative to the image centre
# (x in [-30, 30], y in [-40, 40], y pointing down); `_Pen` applies the per-image jitter
# (scale, rotation, shift) and the supersampling, so every shape gets the same augmentation.
# ---------------------------------------------------------------------------------------------


def _ell(cx, cy, rx, ry, a0=0.0, a1=360.0, n=28):
    "Points on an ellipse arc from angle `a0` to `a1` (degrees, y down), as a polyline."
    ts = np.linspace(math.radians(a0), math.radians(a1), n)
    return [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in ts]


class _Pen:
    "Draws shape primitives through one similarity transform (jitter) onto a supersampled canvas."

    def __init__(self, draw, s, theta, dx, dy):
        self.d, self.s = draw, s
        self.c, self.sn = math.cos(theta), math.sin(theta)
        self.ox, self.oy = (_W / 2 + dx) * _SS, (_H / 2 + dy) * _SS

    def _t(self, pts):
        k, c, sn = self.s * _SS, self.c, self.sn
        return [(self.ox + k * (c * x - sn * y), self.oy + k * (sn * x + c * y)) for x, y in pts]

    def _w(self, w):
        return max(1, int(round(w * self.s * _SS)))

    def poly(self, pts, fill=None, outline=None, width=1.0):
        q = self._t(pts)
        if fill is not None:
            self.d.polygon(q, fill=fill)
        if outline is not None:
            self.d.line(q + q[:1], fill=outline, width=self._w(width), joint="curve")

    def line(self, pts, col, width=1.0):
        self.d.line(self._t(pts), fill=col, width=self._w(width), joint="curve")

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width=1.0):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, outline, width)

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=1.0):
        self.poly(_ell(cx, cy, rx, ry, 0, 360, 36)[:-1], fill, outline, width)

    def dot(self, cx, cy, r, col):
        self.ellipse(cx, cy, r, r, fill=col)


def _mirror(pts):
    "Mirror a left-half outline (listed top to bottom) to make a symmetric closed outline."
    return pts + [(-x, y) for x, y in reversed(pts)]


# Each shape gets: pen, fill colour, outline colour (darker fill), detail colour (contrasting).
def _tshirt(p, c, o, d):
    body = [(-7, -25), (-15, -23), (-27, -13), (-21, -4), (-15, -9), (-15, 26),
            (15, 26), (15, -9), (21, -4), (27, -13), (15, -23), (7, -25)]
    p.poly(body + _ell(0, -25, 7, 5, 0, 180, 12)[1:-1], c, o, 1.2)
    p.line(_ell(0, -25, 7, 5, 0, 180, 12), d, 1.3)
    p.line([(-23, -9), (-18, -5)], o, 0.8)
    p.line([(23, -9), (18, -5)], o, 0.8)


def _shirt(p, c, o, d):
    body = [(-7, -27), (-15, -24), (-22, -16), (-26, 22), (-19, 23), (-15, -6), (-15, 28),
            (15, 28), (15, -6), (19, 23), (26, 22), (22, -16), (15, -24), (7, -27), (0, -20)]
    p.poly(body, c, o, 1.2)
    p.poly([(-8, -28), (0, -20), (-7, -15)], c, o, 1.0)  # collar
    p.poly([(8, -28), (0, -20), (7, -15)], c, o, 1.0)
    p.line([(0, -20), (0, 28)], o, 1.0)  # button placket
    for y in (-14, -6, 2, 10, 18):
        p.dot(2, y, 1.1, d)
    p.rect(-12, -12, -5, -5, None, o, 0.8)  # chest pocket
    p.line([(-26, 18), (-19, 19)], o, 0.8)  # cuffs
    p.line([(26, 18), (19, 19)], o, 0.8)


def _kurta(p, c, o, d):
    body = [(-6, -31), (-13, -29), (-20, -21), (-25, 8), (-18, 10), (-13, -12), (-16, 37),
            (16, 37), (13, -12), (18, 10), (25, 8), (20, -21), (13, -29), (6, -31)]
    p.poly(body + _ell(0, -31, 6, 3.5, 0, 180, 10)[1:-1], c, o, 1.2)
    p.line([(0, -27.5), (0, -12)], o, 1.0)  # neck slit
    for y in (-24, -19, -14):
        p.dot(1.5, y, 0.9, d)
    p.line([(-15.5, 31), (15.5, 31)], d, 1.3)  # embroidered hem band
    p.line([(-15, 25), (-16, 37)], o, 0.8)  # side slits
    p.line([(15, 25), (16, 37)], o, 0.8)


def _top(p, c, o, d):
    p.line([(-9, -30), (-10, -15)], o, 1.2)  # thin straps
    p.line([(9, -30), (10, -15)], o, 1.2)
    body = [(-12, -16), (-4, -12), (4, -12), (12, -16), (14, -2), (11, 8),
            (21, 24), (-21, 24), (-11, 8), (-14, -2)]
    p.poly(body, c, o, 1.2)
    p.line([(-11, 8), (11, 8)], d, 1.2)  # waist seam + peplum
    for x in (-12, -4, 4, 12):
        p.line([(x * 0.6, 9), (x, 23)], o, 0.6)


def _jeans(p, c, o, d):
    p.poly([(-15, -31), (15, -31), (18, 37), (5, 37), (0, -5), (-5, 37), (-18, 37)], c, o, 1.2)
    p.line([(-15, -26), (15, -26)], o, 1.0)  # waistband
    p.line([(0, -26), (0, -10)], o, 0.9)  # fly
    p.line(_ell(-15, -26, 7, 6, 0, 90, 8), d, 0.9)  # front pockets
    p.line(_ell(15, -26, 7, 6, 90, 180, 8), d, 0.9)
    p.dot(0, -28.5, 1.0, d)
    p.line([(-17.5, 33), (-5.5, 33)], d, 0.8)  # hems
    p.line([(17.5, 33), (5.5, 33)], d, 0.8)


def _shorts(p, c, o, d):
    p.poly([(-16, -20), (16, -20), (20, 14), (4, 14), (0, -2), (-4, 14), (-20, 14)], c, o, 1.2)
    p.line([(-16, -15), (16, -15)], o, 1.0)
    p.line([(0, -15), (0, -4)], o, 0.9)
    p.line(_ell(-16, -15, 6, 6, 0, 90, 8), d, 0.9)
    p.line(_ell(16, -15, 6, 6, 90, 180, 8), d, 0.9)
    p.line([(-19.5, 10), (-4.5, 10)], d, 0.8)
    p.line([(19.5, 10), (4.5, 10)], d, 0.8)


def _briefs(p, c, o, d):
    p.poly([(-22, -12), (22, -12), (22, -5), (6, 14), (-6, 14), (-22, -5)], c, o, 1.2)
    p.rect(-22, -12, 22, -7, d, o, 0.8)  # waistband
    p.line(_ell(-22, 10, 15, 15, -90, -20, 10), o, 0.8)  # leg openings
    p.line(_ell(22, 10, 15, 15, 200, 270, 10), o, 0.8)


def _watch(p, c, o, d):
    p.rect(-7, -37, 7, -10, c, o, 1.0)  # strap
    p.rect(-7, 10, 7, 37, c, o, 1.0)
    for y in (18, 23, 28):
        p.dot(0, y, 1.0, o)
    p.rect(12, -3, 16, 3, o)  # crown
    p.ellipse(0, 0, 14, 14, (200, 200, 205), (70, 70, 75), 1.2)  # case
    p.ellipse(0, 0, 11, 11, (250, 250, 248), None)  # dial
    for k in range(12):
        a = k * math.pi / 6
        p.line([(9 * math.cos(a), 9 * math.sin(a)), (10.5 * math.cos(a), 10.5 * math.sin(a))], (40, 40, 40), 0.7)
    p.line([(0, 0), (0, -8)], (30, 30, 30), 1.0)
    p.line([(0, 0), (5, 3)], (30, 30, 30), 1.2)


def _sunglasses(p, c, o, d):
    lens = (35, 38, 45)
    for x in (-12.5, 12.5):
        p.ellipse(x, 2, 10.5, 8, lens, c, 2.0)
    p.line(_ell(0, -1, 3, 2.5, 180, 360, 8), c, 1.6)  # bridge
    p.line([(-23, -2), (-28, -6)], c, 1.6)  # temples
    p.line([(23, -2), (28, -6)], c, 1.6)
    p.line([(-18, -2), (-14, 0)], (200, 200, 210), 0.8)  # glint
    p.line([(7, -2), (11, 0)], (200, 200, 210), 0.8)


def _handbag(p, c, o, d):
    p.line(_ell(0, -8, 12, 15, 180, 360, 16), o, 2.6)  # handle
    p.poly([(-18, -8), (18, -8), (24, 26), (-24, 26)], c, o, 1.2)
    p.line([(-19.5, 2), (19.5, 2)], o, 0.9)  # flap edge
    p.rect(-3, 0, 3, 6, d, o, 0.7)  # clasp


def _backpack(p, c, o, d):
    p.line(_ell(0, -29, 5, 5, 180, 360, 10), o, 1.8)  # top handle
    p.line([(-14, -18), (-22, 0), (-20, 28)], o, 2.4)  # shoulder straps
    p.line([(14, -18), (22, 0), (20, 28)], o, 2.4)
    p.poly(_ell(0, -16, 17, 13, 180, 360, 16) + [(18, 32), (-18, 32)], c, o, 1.2)
    p.rect(-12, 8, 12, 28, c, o, 1.0)  # front pocket
    p.line([(-11, 12), (11, 12)], d, 0.9)  # zip
    p.line(_ell(0, -10, 13, 10, 200, 340, 12), d, 0.8)


def _wallet(p, c, o, d):
    p.rect(-14, -19, 4, -10, (236, 236, 232), (120, 120, 120), 0.8)  # card sticking out
    p.rect(-22, -14, 22, 14, c, o, 1.2)
    p.rect(-19.5, -11.5, 19.5, 11.5, None, d, 0.6)  # stitching
    p.line([(-22, -2), (22, -2)], o, 0.9)  # fold / flap
    p.dot(0, 3, 2.0, d)  # snap


def _belt(p, c, o, d):
    p.poly([(-29, 0), (-25, -3.5), (18, -3.5), (18, 3.5), (-25, 3.5)], c, o, 1.0)
    for x in (-20, -15, -10, -5):
        p.dot(x, 0, 0.9, o)
    p.rect(18, -7, 27, 7, None, (175, 160, 95), 1.6)  # buckle frame
    p.line([(18, 0), (26, 0)], (175, 160, 95), 1.0)  # prong


def _socks(p, c, o, d):
    pts = [(-10, -32), (4, -32), (4, 0), (17, 4), (21, 8), (22, 12), (20, 16), (16, 18),
           (-2, 18), (-8, 15), (-10, 10)]
    p.poly(pts, c, o, 1.2)
    for x in (-7, -4, -1, 2):  # ribbed cuff
        p.line([(x, -32), (x, -24)], o, 0.6)
    p.line(_ell(16, 11, 6, 7.5, -60, 60, 8), d, 1.2)  # toe
    p.line(_ell(-2, 9, 8, 8, 100, 200, 8), d, 1.2)  # heel


def _casual_shoe(p, c, o, d):
    upper = [(-24, 5), (-24, -7), (-18, -9), (-8, -7), (4, -4), (16, -2), (24, 1), (27, 6)]
    p.poly(upper, c, o, 1.2)
    p.poly([(-26, 5), (27, 5), (26, 10), (-25, 10)], (238, 238, 234), (110, 110, 110), 1.0)  # sole
    for x in (-6, -2, 2, 6):
        p.line([(x - 1.5, -8 + (x + 6) * 0.3), (x + 1.5, -3 + (x + 6) * 0.3)], d, 0.8)  # laces
    p.line(_ell(22, 5, 6, 5, 200, 270, 6), o, 0.8)  # toe cap


def _sports_shoe(p, c, o, d):
    upper = [(-24, 4), (-25, -13), (-19, -15), (-11, -8), (2, -6), (16, -2), (25, 2), (27, 7)]
    p.poly(upper, c, o, 1.2)
    sole = [(-26, 4), (28, 7), (27, 14)] + [(x, 14 + (1.5 if i % 2 else 0))
                                            for i, x in enumerate(range(24, -26, -4))] + [(-26, 13)]
    p.poly(sole, (240, 240, 236), (110, 110, 110), 1.0)  # chunky treaded sole
    p.line([(-20, 1), (-6, 2), (8, 0), (20, 3)], d, 1.6)  # swoosh stripe
    p.line([(-23, -12), (-20, -3)], d, 1.0)  # heel tab
    for x in (-6, -1, 4):
        p.line([(x - 1.5, -7 + (x + 6) * 0.3), (x + 1.5, -2 + (x + 6) * 0.3)], d, 0.8)


def _formal_shoe(p, c, o, d):
    upper = [(-24, 4), (-24, -6), (-17, -8), (-5, -6), (9, -3), (21, 0), (29, 4), (27, 5)]
    p.poly(upper, c, o, 1.2)
    p.line([(-14, 5.5), (28, 5.5)], (35, 30, 28), 1.1)  # thin sole
    p.rect(-24, 4, -16, 10, (40, 34, 30))  # block heel
    p.line(_ell(18, 3, 7, 6, 190, 280, 8), o, 0.8)  # toe cap seam
    p.line([(-8, -4), (10, -1)], (245, 245, 245), 0.7)  # gloss
    for x in (-2, 2):
        p.dot(x, -5.5, 0.8, o)


def _heel(p, c, o, d):
    p.poly([(-20, -7), (-15, -7), (-16.5, 16), (-18, 16)], (45, 40, 38))  # stiletto
    upper = [(-21, -15), (-18, -16), (-10, -8), (2, 1), (10, 2), (20, 4), (27, 9), (26, 12),
             (10, 12), (-6, 2), (-20, -7)]
    p.poly(upper, c, o, 1.2)
    p.line([(-20, -7), (-6, 2), (10, 12), (26, 12)], (45, 40, 38), 1.0)  # sole line


def _sandal(p, c, o, d):
    p.poly(_ell(-22, 10, 4, 2.5, 90, 270, 8) + _ell(22, 10, 5, 2.5, -90, 90, 8), (200, 175, 140), (110, 90, 70), 1.0)
    straps = (_ell(12, 8, 8, 8, 180, 360, 12), _ell(-1, 8, 6, 10, 180, 360, 12),  # toe, instep,
              _ell(-18, 8, 6, 14, 180, 360, 12))  # ankle strap
    for pts in straps:
        p.line(pts, o, 3.4)  # edge, so light colours stay visible
        p.line(pts, c, 2.2)
    p.dot(-13, -2, 1.2, (175, 160, 95))  # buckle


def _flip_flop(p, c, o, d):
    p.ellipse(0, 16, 11, 19, c, o, 1.2)  # heel part
    p.ellipse(0, -13, 13.5, 20, c, o, 1.2)  # forefoot part
    p.ellipse(0, 16, 10.4, 18.4, c)
    p.line([(-12, 2), (0, -20), (12, 2)], d, 2.2)  # Y strap
    p.dot(0, -20, 1.6, d)


def _perfume(p, c, o, d):
    glass = tuple(int(v * 0.6 + 255 * 0.4) for v in c)
    p.rect(-14, -8, 14, 32, glass, o, 1.2)  # bottle
    p.rect(-4, -16, 4, -8, (200, 200, 205), (100, 100, 100), 0.8)  # neck
    p.rect(-8, -31, 8, -16, d, o, 1.0)  # cap
    p.rect(-9, 4, 9, 18, (248, 248, 245), (120, 120, 120), 0.7)  # label
    p.line([(-6, 9), (6, 9)], (90, 90, 90), 0.7)
    p.line([(-5, 13), (5, 13)], (90, 90, 90), 0.6)


def _tie(p, c, o, d):
    p.poly([(-5, -36), (5, -36), (3, -27), (-3, -27)], c, o, 1.0)  # knot
    p.poly([(-3, -27), (3, -27), (9, 25), (0, 35), (-9, 25)], c, o, 1.0)  # blade
    for y in (-18, -6, 6, 18):
        w = 3 + (y + 27) * 0.115
        p.line([(-w, y + 3), (w, y - 3)], d, 1.0)  # diagonal stripes


def _cap(p, c, o, d):
    p.poly([(-18, 4), (18, 4), (29, 8), (27, 12), (10, 10), (-18, 8)], c, o, 1.0)  # brim
    p.poly(_ell(0, 4, 18, 18, 180, 360, 20), c, o, 1.2)  # crown
    p.line(_ell(0, 4, 7, 18, 220, 270, 8), o, 0.7)  # panel seams
    p.line(_ell(0, 4, 7, 18, 270, 320, 8), o, 0.7)
    p.dot(0, -14, 1.8, d)  # button


def _scarf(p, c, o, d):
    p.poly([(-27, -20), (27, -20), (0, 28)], c, o, 1.2)  # folded square (triangle)
    for t in np.linspace(0.08, 0.92, 10):  # fringe along the two slanted edges
        for sx in (-1, 1):
            x, y = sx * 27 * (1 - t), -20 + 48 * t
            p.line([(x, y), (x + sx * 3.2, y + 1.8)], o, 0.6)
    for x, y in ((-10, -12), (0, -12), (10, -12), (-5, -3), (5, -3), (0, 6)):
        p.dot(x, y, 1.5, d)


def _muffler(p, c, o, d):
    p.line(_ell(0, -22, 10, 9, 180, 360, 14), c, 7.0)  # loop around the neck
    p.rect(-13, -22, -3, 30, c, o, 1.0)  # two hanging ends
    p.rect(1, -20, 11, 34, c, o, 1.0)
    for y in (-12, -2, 8, 18):
        p.line([(-13, y), (-3, y)], d, 1.6)
        p.line([(1, y + 3), (11, y + 3)], d, 1.6)
    for x in np.linspace(-12, -4, 5):  # fringes
        p.line([(x, 30), (x, 34)], o, 0.6)
    for x in np.linspace(2, 10, 5):
        p.line([(x, 34), (x, 38)], o, 0.6)


def _earrings(p, c, o, d):
    metal = (190, 170, 100)
    for x in (-11, 11):
        p.line(_ell(x, -16, 3.5, 4, 180, 360, 10), metal, 0.9)  # hook
        p.line([(x + 3.5, -16), (x + 3.5, -13)], metal, 0.9)
        p.line([(x - 3.5, -16), (x, -9)], metal, 0.9)
        p.poly([(x, -9)] + _ell(x, 6, 7, 9, -40, 220, 16), c, o, 1.0)  # drop
        p.dot(x, 6, 2.2, d)  # stone


def _gloves(p, c, o, d):
    for x0, top in ((-12, -24), (-6, -29), (0, -28), (6, -22)):
        p.poly([(x0, -4), (x0, top)] + _ell(x0 + 3, top, 3, 3, 180, 360, 8) + [(x0 + 6, top), (x0 + 6, -4)], c, o, 1.0)
    p.poly([(11, 3), (19, -9), (23, -6), (16, 12)], c, o, 1.0)  # thumb
    p.rect(-12, -4, 12, 20, c, o, 1.0)  # palm
    p.rect(-13, 20, 13, 33, d, o, 1.0)  # ribbed cuff
    for x in (-8, -3, 2, 7):
        p.line([(x, 21), (x, 32)], o, 0.6)


# ---------------------------------------------------------------------------------------------
# Class table: articleType, masterCategory, subCategory, count at scale 1, split, drawing,
# gender choices, usage choices. Insertion order = frequency rank (at scale 1).
# split: "both", "test" (odd years only) or "train" (even years only).
# ---------------------------------------------------------------------------------------------
_MWBG = ("Men", "Women", "Boys", "Girls")
_MW = ("Men", "Women")
_SPEC = [
    # 20 frequent classes
    ("Tshirts", "Apparel", "Topwear", 262, "both", _tshirt, _MWBG, ("Casual", "Sports")),
    ("Shirts", "Apparel", "Topwear", 232, "both", _shirt, ("Men", "Men", "Women", "Boys"), ("Casual", "Formal")),
    ("Casual Shoes", "Footwear", "Shoes", 210, "both", _casual_shoe, _MW, ("Casual",)),
    ("Watches", "Accessories", "Watches", 193, "both", _watch, ("Men", "Women", "Unisex"), ("Casual", "Formal")),
    ("Sports Shoes", "Footwear", "Shoes", 178, "both", _sports_shoe, ("Men", "Women", "Boys", "Unisex"), ("Sports",)),
    ("Kurtas", "Apparel", "Topwear", 163, "both", _kurta, ("Men", "Women", "Women"), ("Ethnic",)),
    ("Tops", "Apparel", "Topwear", 149, "both", _top, ("Women", "Women", "Girls"), ("Casual",)),
    ("Handbags", "Accessories", "Bags", 137, "both", _handbag, ("Women",), ("Casual", "Formal")),
    ("Heels", "Footwear", "Shoes", 126, "both", _heel, ("Women",), ("Casual", "Formal")),
    ("Sunglasses", "Accessories", "Eyewear", 116, "both", _sunglasses, ("Men", "Women", "Unisex"), ("Casual",)),
    ("Wallets", "Accessories", "Wallets", 107, "both", _wallet, ("Men", "Men", "Women", "Unisex"),
     ("Casual", "Formal")),
    ("Flip Flops", "Footwear", "Flip Flops", 99, "both", _flip_flop, ("Men", "Women", "Unisex"), ("Casual",)),
    ("Sandals", "Footwear", "Sandal", 91, "both", _sandal, ("Men", "Women", "Girls"), ("Casual",)),
    ("Briefs", "Apparel", "Innerwear", 84, "both", _briefs, _MW, ("Casual",)),
    ("Belts", "Accessories", "Belts", 78, "both", _belt, ("Men", "Men", "Women"), ("Casual", "Formal")),
    ("Backpacks", "Accessories", "Bags", 72, "both", _backpack, ("Unisex", "Men", "Women"), ("Casual", "Sports")),
    ("Socks", "Accessories", "Socks", 66, "both", _socks, ("Men", "Women", "Unisex"), ("Casual", "Sports")),
    ("Formal Shoes", "Footwear", "Shoes", 61, "both", _formal_shoe, ("Men",), ("Formal",)),
    ("Perfume and Body Mist", "Personal Care", "Fragrance", 56, "test", _perfume, ("Men", "Women", "Unisex"),
     ("Casual",)),
    ("Jeans", "Apparel", "Bottomwear", 52, "both", _jeans, ("Men", "Women", "Boys", "Girls"), ("Casual",)),
    # rare classes (fewer rows than any frequent class at every scale)
    ("Ties", "Accessories", "Ties", 30, "both", _tie, ("Men",), ("Formal",)),
    ("Caps", "Accessories", "Headwear", 22, "both", _cap, ("Men", "Unisex", "Boys"), ("Casual", "Sports")),
    ("Scarves", "Accessories", "Scarves", 16, "test", _scarf, ("Women",), ("Casual", "Ethnic")),
    ("Earrings", "Accessories", "Jewellery", 12, "both", _earrings, ("Women", "Girls"), ("Casual", "Ethnic")),
    ("Mufflers", "Accessories", "Mufflers", 9, "train", _muffler, ("Men", "Unisex"), ("Casual",)),
    ("Gloves", "Accessories", "Gloves", 7, "test", _gloves, ("Men", "Women", "Unisex"), ("Casual", "Sports")),
    ("Shorts", "Apparel", "Bottomwear", 5, "both", _shorts, ("Men", "Women", "Boys"), ("Casual", "Sports")),
]
_N_FREQUENT = 20

DEMO_CLASSES: dict[str, tuple[str, str]] = {name: (m, s) for name, m, s, *_ in _SPEC}
"articleType -> (masterCategory, subCategory); insertion order = frequency rank at scale 1."

_COLOURS = [  # (name, RGB, relative frequency) -- roughly the real baseColour distribution
    ("Black", (28, 28, 30), 18), ("White", (246, 246, 244), 10), ("Blue", (40, 90, 200), 10),
    ("Brown", (120, 72, 40), 7), ("Grey", (128, 128, 130), 6), ("Red", (200, 30, 35), 6),
    ("Green", (40, 140, 60), 5), ("Navy Blue", (22, 34, 90), 6), ("Pink", (235, 120, 170), 5),
    ("Silver", (185, 188, 192), 3), ("Purple", (110, 50, 140), 3), ("Yellow", (235, 200, 40), 3),
    ("Beige", (215, 195, 160), 3), ("Gold", (200, 165, 60), 2), ("Maroon", (115, 20, 35), 2),
    ("Orange", (240, 130, 30), 2), ("Olive", (110, 115, 45), 2), ("Charcoal", (60, 62, 66), 2),
    ("Cream", (240, 232, 205), 2), ("Teal", (20, 128, 128), 1), ("Khaki", (190, 175, 120), 1),
    ("Magenta", (200, 30, 140), 1),
]
_BRANDS = ["Nike", "Puma", "Adidas", "Reebok", "Fila", "Wrangler", "Levis", "Titan", "Fastrack",
           "Baggit", "Lino Perros", "Jockey", "Fabindia", "Biba", "Catwalk", "Ray-Ban", "Wildcraft",
           "United Colors of Benetton", "Lee", "Provogue", "ADIDAS Originals", "Park Avenue"]
_SEASONS = ("Summer", "Fall", "Winter", "Spring")


def _count(base: int, frequent: bool, scale: float) -> int:
    "Per-class row count at `scale`; the minimums keep the traps and top-20 ordering at tiny scales."
    return max(_MIN_FREQUENT if frequent else _MIN_RARE, math.floor(base * scale + 0.5))


def _render(draw_fn, colour, seed: int, ident: int, grey: bool) -> Image.Image:
    "Draw one product image with per-image jitter; uses its own RNG so images don't depend on row order."
    rng = np.random.default_rng((seed, ident, 7))
    bg = tuple(int(v) for v in np.clip(rng.integers(242, 256) + rng.integers(-2, 3, 3), 0, 255))
    col = tuple(int(np.clip(v + rng.integers(-14, 15), 0, 255)) for v in colour)
    outline = tuple(int(v * 0.55) for v in col)
    detail = (55, 55, 58) if sum(col) / 3 > 140 else (232, 232, 228)
    img = Image.new("RGB", (_W * _SS, _H * _SS), bg)
    pen = _Pen(ImageDraw.Draw(img), s=float(rng.uniform(0.85, 1.15)),
               theta=math.radians(float(rng.uniform(-8, 8))),
               dx=float(rng.uniform(-3.5, 3.5)), dy=float(rng.uniform(-4, 4)))
    draw_fn(pen, col, outline, detail)
    img = img.reduce(_SS)
    sigma = np.float32(rng.uniform(2.5, 6.0))  # mild sensor-like noise
    arr = np.asarray(img, dtype=np.float32) + sigma * rng.standard_normal((_H, _W, 3), dtype=np.float32)
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    return img.convert("L") if grey else img


def generate_demo(
    out: Path,  # folder to write `styles.csv` and `images/` into (created if missing)
    scale: float = 1.0,  # multiplies per-class counts (0.1: ~300 rows for tests); minimums keep all traps
    seed: int = 0,  # RNG seed; the same (scale, seed) gives byte-identical files
) -> Path:  # `out`
    "Write the synthetic demo data set (Kaggle 'Fashion Product Images (Small)' layout, with its traps)."
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng((seed, 20240611))
    cw = np.array([w for *_, w in _COLOURS], dtype=float)
    cw /= cw.sum()

    rows = []  # dicts, in class order first; shuffled below
    for rank, (name, master, sub, base, split, draw_fn, genders, usages) in enumerate(_SPEC):
        frequent = rank < _N_FREQUENT
        n = _count(base, frequent, scale)
        if split == "both":
            n_even = min(n - 1, max(1, math.floor(_P_EVEN * n + 0.5)))
            even = rng.permutation(np.arange(n) < n_even)
        else:
            even = np.full(n, split == "train")
        for e in even:
            colour = int(rng.choice(len(_COLOURS), p=cw))
            gender = genders[int(rng.integers(len(genders)))]
            rows.append(dict(
                gender=gender, master=master, sub=sub, article=name, colour=colour,
                season=_SEASONS[int(rng.integers(4))],
                year=str((_EVEN_YEARS if e else _ODD_YEARS)[int(rng.integers(4))]),
                usage=usages[int(rng.integers(len(usages)))],
                brand=_BRANDS[int(rng.integers(len(_BRANDS)))],
                draw=draw_fn, frequent=frequent, comma=False, missing=False, grey=False))

    # Traps on rows of frequent classes (not the all-test Perfume class, to keep its trap clean).
    n = len(rows)
    pool = [i for i, r in enumerate(rows) if r["frequent"] and r["article"] != "Perfume and Body Mist"]
    pool = [int(i) for i in rng.permutation(pool)]
    n_missing, n_comma, n_noyear = max(1, round(0.002 * n)), max(3, round(0.004 * n)), max(1, round(0.001 * n))
    for i in pool[:n_missing]:
        rows[i]["missing"] = True
    for i in pool[n_missing:n_missing + n_comma]:
        rows[i]["comma"] = True
    for i in pool[n_missing + n_comma:n_missing + n_comma + n_noyear]:
        rows[i]["year"] = ""
    with_image = [i for i, r in enumerate(rows) if not r["missing"]]
    for i in rng.choice(with_image, max(3, round(0.02 * n)), replace=False):
        rows[int(i)]["grey"] = True

    order = rng.permutation(n)
    ids = rng.choice(np.arange(10000, 10000 + max(50000, 20 * n)), n, replace=False)
    lines = [",".join(COLUMNS)]
    for ident, i in zip(ids.tolist(), order.tolist()):
        r = rows[i]
        cname, rgb, _ = _COLOURS[r["colour"]]
        if r["comma"]:  # unquoted commas: the CSV line gets extra fields, as in the real file
            display = f"{r['brand']} {r['gender']}, {cname}, {r['article']}"
        else:
            display = f"{r['brand']} {r['gender']} {cname} {r['article']}"
        fields = dict(id=str(ident), gender=r["gender"], masterCategory=r["master"], subCategory=r["sub"],
                      articleType=r["article"], baseColour=cname, season=r["season"], year=r["year"], usage=r["usage"],
                      productDisplayName=display)
        lines.append(",".join(fields[c] for c in COLUMNS))
        path = out / "images" / f"{ident}.jpg"
        if r["missing"]:
            path.unlink(missing_ok=True)  # also when `out` holds an older generation
            continue
        _render(r["draw"], rgb, seed, ident, r["grey"]).save(path, "JPEG", quality=90)
    (out / "styles.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return out


def demo_dir(
    cache: Path | None = None,  # cache root; default: $FASHION_FASTAI_CACHE or ~/.cache/fashion_fastai
    scale: float = 1.0,  # passed to `generate_demo`
    seed: int = 0,  # passed to `generate_demo`
) -> Path:  # folder holding `styles.csv` and `images/`
    "Cached demo data set, generated once; built in a temp sibling and renamed so it is never half-written."
    root = Path(cache) if cache is not None else cache_root()
    final = root / f"demo-{_VERSION}-s{float(scale)}-seed{seed}"
    if (final / "styles.csv").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        generate_demo(tmp, scale=scale, seed=seed)
        if final.exists() and not (final / "styles.csv").is_file():
            shutil.rmtree(final)  # leftover without styles.csv: not a finished data set
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "styles.csv").is_file():  # not a lost race with another process
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
