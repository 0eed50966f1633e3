#!/usr/bin/env bash
# Regenerates the pixel-exact COCO mask fixtures in tests/data/coco_mask/ from pycocotools' own C
# code (common/maskApi.c), so that src/data/coco_mask.cpp is checked against the reference and
# not against itself.
#
# Where maskApi.c comes from: github.com/cocodataset/cocoapi, commit
# 8c9bcc3cf640524c4c20a9c40e89cb6a2f2fa0e9 (common/maskApi.c last changed 2018-06-11), files
# common/maskApi.c and common/maskApi.h. This script fetches and compiles nothing from the network
# and no cocoapi code lives in this repository: point COCOAPI_COMMON at a folder holding those two
# files, e.g.
#   git clone https://github.com/cocodataset/cocoapi /tmp/cocoapi
#   COCOAPI_COMMON=/tmp/cocoapi/common scripts/make_mask_fixtures.sh
#
# What it does: writes a small C driver and a Python generator (both ours, below) to a scratch
# folder under /tmp, compiles the driver with maskApi.c, and lets the generator feed it the cases
# (hand-made polygons, seeded random polygons, boxes, the real polygons of COCO val2017 image
# 39769 and of the RefCOCO train2014 images, the real crowd RLE) and write the JSON fixtures.
# Needs: gcc, python3 (standard library only).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cocoapi_common="${COCOAPI_COMMON:-/tmp/cocoapi/common}"
real_fixtures="${REAL_FIXTURES:-/work/shared/fixtures/refer-real}"
out_dir="${repo_root}/tests/data/coco_mask"
scratch="$(mktemp -d /tmp/wico_mask_fixtures.XXXXXX)"
trap 'rm -rf "${scratch}"' EXIT

if [[ ! -f "${cocoapi_common}/maskApi.c" || ! -f "${cocoapi_common}/maskApi.h" ]]; then
  echo "error: ${cocoapi_common}/maskApi.{c,h} not found; set COCOAPI_COMMON (see header)" >&2
  exit 2
fi

# The driver: one request per input line, one answer line per request.
#   poly <h> <w> <nparts> (<n> <n numbers>)...  -> parts as frPoly does (k = n / 2, odd one dropped)
#   bbox <h> <w> <nboxes> (<x> <y> <bw> <bh>)... -> parts as frBbox does
#   rle  <h> <w> <m> <m counts>                   -> the RLE as given (uncompressed crowd form)
# Answer: <union string> <intersection string> <union area> <4 x union bbox> <nparts> <part strings>
cat > "${scratch}/driver.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "maskApi.h"

static void print_rle(const RLE *r) {
  char *s = rleToString(r);
  printf(" %s", s);
  free(s);
}

int main(void) {
  char kind[16];
  while (scanf("%15s", kind) == 1) {
    unsigned long h, w, n, i, j;
    if (scanf("%lu %lu %lu", &h, &w, &n) != 3) return 1;
    RLE *parts;
    rlesInit(&parts, n == 0 ? 1 : n);
    if (strcmp(kind, "rle") == 0) {
      uint *cnts = malloc(sizeof(uint) * (n + 1));
      for (j = 0; j < n; j++) if (scanf("%u", &cnts[j]) != 1) return 1;
      rleInit(&parts[0], h, w, n, cnts);
      free(cnts);
      n = 1;
    } else {
      for (i = 0; i < n; i++) {
        unsigned long len;
        if (strcmp(kind, "bbox") == 0) len = 4;
        else if (scanf("%lu", &len) != 1) return 1;
        double *xy = malloc(sizeof(double) * (len + 1));
        for (j = 0; j < len; j++) if (scanf("%lf", &xy[j]) != 1) return 1;
        if (strcmp(kind, "bbox") == 0) rleFrBbox(&parts[i], xy, h, w, 1);
        else rleFrPoly(&parts[i], xy, len / 2, h, w);
        free(xy);
      }
    }
    RLE merged, inter;
    rleMerge(parts, &merged, n, 0);
    rleMerge(parts, &inter, n, 1);
    uint area;
    double bb[4];
    rleArea(&merged, 1, &area);
    rleToBbox(&merged, bb, 1);
    print_rle(&merged);
    print_rle(&inter);
    printf(" %u %.17g %.17g %.17g %.17g %lu", area, bb[0], bb[1], bb[2], bb[3], n);
    for (i = 0; i < n; i++) print_rle(&parts[i]);
    printf("\n");
    fflush(stdout);
    rleFree(&merged);
    rleFree(&inter);
    rlesFree(&parts, n);
  }
  return 0;
}
EOF

cat > "${scratch}/gen.py" <<'EOF'
"""Feeds the driver the fixture cases and writes tests/data/coco_mask/*.json."""
import json
import random
import subprocess
import sys

driver, real, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]


def run(kind, h, w, parts):
    if kind == "rle":
        line = f"rle {h} {w} {len(parts)} " + " ".join(str(c) for c in parts)
    elif kind == "bbox":
        line = f"bbox {h} {w} {len(parts)} " + " ".join(
            " ".join(repr(float(v)) for v in box) for box in parts)
    else:
        line = f"poly {h} {w} {len(parts)} " + " ".join(
            f"{len(p)} " + " ".join(repr(float(v)) for v in p) for p in parts)
    answer = subprocess.run([driver], input=line + "\n", capture_output=True, text=True,
                            check=True).stdout.split()
    n = int(answer[7])
    return {"union": answer[0], "intersection": answer[1], "area": int(answer[2]),
            "bbox": [float(v) for v in answer[3:7]], "parts": answer[8:8 + n]}


def case(name, h, w, polygons, form="polygons"):
    # form "boxes" is what frPyObjects does when the first part has exactly 4 numbers.
    ref = run("bbox" if form == "boxes" else "poly", h, w, polygons)
    return {"name": name, "height": h, "width": w, "form": form, "polygons": polygons, **ref}


def write(name, doc):
    with open(f"{out_dir}/{name}", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


note = ("Reference RLEs from pycocotools common/maskApi.c (cocoapi 8c9bcc3), made by "
        "scripts/make_mask_fixtures.sh. parts: rleFrPoly (or rleFrBbox for form 'boxes') per "
        "part; union / intersection: rleMerge of the parts; area, bbox: rleArea, rleToBbox of "
        "the union. Strings are rleToString's compressed form.")

hand = [
    case("square_2x2", 5, 5, [[1, 1, 3, 1, 3, 3, 1, 3]]),
    case("triangle", 40, 40, [[10, 10, 30, 12, 18, 35]]),
    case("triangle_clockwise", 40, 40, [[18, 35, 30, 12, 10, 10]]),
    case("concave_l_shape", 40, 40, [[5, 5, 35, 5, 35, 15, 15, 15, 15, 35, 5, 35]]),
    case("concave_arrow", 40, 40, [[5.3, 20.1, 30.7, 4.2, 22.4, 20.6, 31.9, 36.8]]),
    case("self_touching", 40, 40, [[5, 5, 20, 20, 35, 5, 35, 35, 20, 20, 5, 35]]),
    case("self_intersecting_bowtie", 40, 40, [[5, 5, 35, 35, 35, 5, 5, 35]]),
    case("full_image_on_border", 40, 40, [[0, 0, 40, 0, 40, 40, 0, 40]]),
    case("last_pixel_centres", 40, 40, [[0, 0, 39, 0, 39, 39, 0, 39]]),
    case("vertex_at_x_eq_width", 40, 40, [[20, 5, 40, 20, 20, 35]]),
    case("vertex_at_y_eq_height", 30, 40, [[5, 5, 30, 10, 17, 30]]),
    case("repeated_last_vertex", 40, 40, [[5, 5, 30, 8, 20, 30, 20, 30]]),
    case("tiny_subpixel_off_centre", 20, 20, [[10.2, 10.2, 10.4, 10.25, 10.3, 10.4]]),
    case("tiny_subpixel_on_centre", 20, 20, [[9.9, 9.9, 10.1, 9.9, 10.0, 10.1]]),
    case("tiny_one_pixel_square", 20, 20, [[4.5, 6.5, 5.5, 6.5, 5.5, 7.5, 4.5, 7.5]]),
    case("odd_length_dropped", 40, 40, [[5, 5, 30, 5, 30, 30, 5, 30, 17]]),
    case("half_pixel_square", 10, 10, [[0.5, 0.5, 3.5, 0.5, 3.5, 3.5, 0.5, 3.5]]),
    case("outside_image_clipped", 40, 40, [[-5, -5, 20, -3, 48, 50, 10, 50]]),
    case("wide_image", 20, 50, [[2, 3, 47.5, 1, 49.9, 18.2, 25, 10, 1, 19]]),
    case("tall_image", 50, 20, [[3, 2, 1, 47.5, 18.2, 49.9, 10, 25, 19, 1]]),
    case("two_overlapping_parts", 30, 30,
         [[2, 2, 20, 2, 20, 20, 2, 20], [10, 10, 28, 10, 28, 28, 10, 28]]),
    case("disjoint_parts", 30, 30, [[1, 1, 8, 1, 4, 9], [15, 15, 28, 16, 20, 28]]),
    case("second_part_four_numbers", 30, 30, [[2, 2, 25, 3, 12, 27], [5, 5, 25, 25]]),
    case("second_part_two_numbers", 30, 30, [[2, 2, 25, 3, 12, 27], [5.0, 7.0]]),
    case("boxes_single", 20, 30, [[2.3, 4.7, 10.2, 5.1]], form="boxes"),
    case("boxes_two_overlapping", 20, 30, [[1, 1, 10, 10], [6.4, 5.6, 20.2, 12.9]],
         form="boxes"),
    case("boxes_outside_image", 20, 30, [[-3, -2, 40, 5.5]], form="boxes"),
    case("boxes_empty_width", 20, 30, [[3, 3, 0, 8]], form="boxes"),
]

rng = random.Random(20240527)
for i in range(40):
    h, w = rng.randint(5, 60), rng.randint(5, 60)
    nparts = rng.choice([1, 1, 1, 2, 3])
    parts = []
    for _ in range(nparts):
        nv = rng.randint(3, 12)
        part = []
        for _ in range(nv):
            # Mostly inside, some outside, some on the 0.1 px grid where rounding ties live.
            x = rng.uniform(-0.2 * w, 1.2 * w)
            y = rng.uniform(-0.2 * h, 1.2 * h)
            if rng.random() < 0.3:
                x, y = round(x, 1), round(y, 1)
            part += [round(x, 3), round(y, 3)]
        parts.append(part)
    hand.append(case(f"random_{i:02d}", h, w, parts))
write("handmade.json", {"note": note, "cases": hand})

# The two-cats image (COCO val2017 39769, 640x480): 6 real polygons.
with open(f"{real}/coco-images/coco_annotations.txt") as f:
    anns = json.load(f)
write("coco_val2017_39769.json", {"note": note, "cases": [
    dict(case(f"ann_{a['id']}", 480, 640, a["segmentation"]), id=a["id"]) for a in anns]})

# Every polygon annotation of the 4 RefCOCO train2014 images.
with open(f"{real}/refcoco-tfds/refcoco.json") as f:
    refcoco = json.load(f)
cases = []
for image_id, entry in sorted(refcoco["coco_anns"].items()):
    h, w = entry["info"]["height"], entry["info"]["width"]
    for a in entry["anns"]:
        cases.append(dict(case(f"ann_{a['id']}", h, w, a["segmentation"]), id=a["id"],
                          image_id=int(image_id)))
write("refcoco_train2014.json", {"note": note, "cases": cases})

# The real crowd annotation (uncompressed RLE, 427x640).
with open(f"{real}/coco-rle/iscrowd_uncompressed_rle_ann_900300255917.json") as f:
    crowd = json.load(f)
seg = crowd["segmentation"]
ref = run("rle", seg["size"][0], seg["size"][1], seg["counts"])
write("crowd_rle.json", {"note": note, "id": crowd["id"], "segmentation": seg,
                         "string": ref["parts"][0], "area": ref["area"], "bbox": ref["bbox"]})
EOF

gcc -std=c99 -O2 -I"${cocoapi_common}" -o "${scratch}/driver" "${scratch}/driver.c" \
  "${cocoapi_common}/maskApi.c" -lm
mkdir -p "${out_dir}"
python3 "${scratch}/gen.py" "${scratch}/driver" "${real_fixtures}" "${out_dir}"
echo "wrote $(ls "${out_dir}" | wc -l) fixture files to ${out_dir}"
