#!/usr/bin/env bash
# Seeds for fuzz_image: small JPEGs and PNGs of every flavour the decoders
# handle (baseline, progressive, greyscale, CMYK, 4:2:0 and 4:4:4; PNG
# greyscale, grey+alpha, palette, RGBA, 16-bit), cut from
# $TEST_DATA/images with PIL. Nothing is kept in the repository.
set -euo pipefail
corpus=$1
data=${TEST_DATA:-data}
[ -d "$data/images" ] || exit 0
/usr/bin/python3 - "$data/images" "$corpus" <<'PY' || true
import sys, os
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
a = Image.open(os.path.join(src, "chelsea.png")).convert("RGB").resize((48, 32))
b = Image.open(os.path.join(src, "dog.jpg")).convert("RGB").resize((40, 30))
a.save(os.path.join(out, "base.jpg"), quality=80)
b.save(os.path.join(out, "prog.jpg"), quality=70, progressive=True)
b.save(os.path.join(out, "444.jpg"), quality=90, subsampling=0)
a.convert("L").save(os.path.join(out, "grey.jpg"))
a.convert("CMYK").save(os.path.join(out, "cmyk.jpg"))
a.save(os.path.join(out, "rgb.png"))
a.convert("L").save(os.path.join(out, "grey.png"))
a.convert("LA").save(os.path.join(out, "greyalpha.png"))
a.convert("P").save(os.path.join(out, "palette.png"))
a.convert("RGBA").save(os.path.join(out, "rgba.png"))
a.convert("L").convert("I").point(lambda v: v * 257).save(os.path.join(out, "grey16.png"))
PY
exit 0
