import os
import shutil

import pytest
from PIL import ImageFont

from crnn_fast.data import fonts

DEJAVU = "/usr/share/fonts/truetype/dejavu"


def _font(name):
    path = os.path.join(DEJAVU, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed (Debian fonts-dejavu-core)")
    return path


def test_reserved_families_by_folder_and_by_name():
    for folder in ("urw-base35", "lato", "crosextra", "texgyre", "inconsolata", "open-sans", "roboto", "go"):
        assert fonts.is_reserved(folder, "Anything")
    for family in ("Nimbus Roman", "Linux Libertine O", "EB Garamond", "Cantarell", "Go Mono", "Caladea",
                   "Carlito", "Lato", "Roboto Condensed", "Open Sans", "TeX Gyre Termes", "Inconsolata", "Go"):
        assert fonts.is_reserved("somewhere", family), family
    for family in ("DejaVu Sans", "Gobold", "Latin Modern Roman", "Karla", "Goudy Bookletter 1911"):
        assert not fonts.is_reserved("dejavu", family), family


def test_discovery_skips_reserved_and_unused_folders(tmp_path):
    sans = _font("DejaVuSans.ttf")
    for folder in ("mine", "lato", "urw-base35", "aenigma"):
        os.makedirs(tmp_path / "truetype" / folder)
        shutil.copy(sans, tmp_path / "truetype" / folder / "Face.ttf")
    (tmp_path / "truetype" / "mine" / "Broken.ttf").write_bytes(b"not a font")
    found = fonts.discover_fonts((str(tmp_path),))
    assert [(f.family_dir, os.path.basename(f.path)) for f in found] == [("mine", "Face.ttf")]
    assert found[0].family == "DejaVu Sans" and found[0].style == "sans" and not found[0].caps_only


def test_probe_rejects_fonts_without_printable_ascii(tmp_path):
    assert fonts.probe_font(str(tmp_path / "missing.ttf")) is None
    truncated = tmp_path / "truncated.ttf"
    truncated.write_bytes(open(_font("DejaVuSans.ttf"), "rb").read()[:5000])
    assert fonts.probe_font(str(truncated)) is None


@pytest.mark.parametrize("name, style", [("DejaVuSans.ttf", "sans"), ("DejaVuSerif.ttf", "serif"),
                                         ("DejaVuSansMono.ttf", "mono")])
def test_style_of_known_faces(name, style):
    info = fonts.probe_font(_font(name), "dejavu")
    assert info is not None and info.style == style, info


def test_style_names_and_metrics():
    face = ImageFont.truetype(_font("DejaVuSans.ttf"), 24)
    assert fonts.classify_style(face, "Dancing Script Regular") == "script"
    assert fonts.classify_style(face, "Some Display Face") == "display"
    assert fonts.classify_style(face, "Routed Gothic Narrow") == "condensed"
    mono = ImageFont.truetype(_font("DejaVuSansMono.ttf"), 24)
    assert fonts.classify_style(mono, "Anything Display") == "mono"  # metrics decide before name words


def test_split_is_disjoint_and_the_manifest_holds_packages():
    held = fonts.heldout_font_dirs()
    assert fonts.HELDOUT_FONT_DIRS <= held
    listed = held - fonts.HELDOUT_FONT_DIRS
    assert listed, "heldout_fonts.txt lists no package"
    assert not any(fonts.is_reserved(d, "") for d in held)
    found = fonts.discover_fonts()
    train, test = fonts.fonts_for_split("train", found), fonts.fonts_for_split("test", found)
    assert not set(train) & set(test) and set(train) | set(test) == set(found)
    assert all(f.family_dir in held for f in test) and all(f.family_dir not in held for f in train)
    with pytest.raises(ValueError, match="split"):
        fonts.fonts_for_split("val")
