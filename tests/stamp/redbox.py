#!/usr/bin/env python3
# tests/stamp/redbox.py PPM X0 Y0 X1 Y1 — counts the seal-red pixels of a
# binary PPM (pdftoppm -r 72: one pixel a point) inside the box (points,
# from the page's lower left) and outside it; prints "IN OUT".
import sys

def main():
    data = open(sys.argv[1], "rb").read()
    x0, y0, x1, y1 = (float(v) for v in sys.argv[2:6])
    # P6 header: magic, width, height, maxval, each after whitespace.
    fields, i = [], 0
    while len(fields) < 4:
        while data[i:i + 1].isspace():
            i += 1
        j = i
        while not data[j:j + 1].isspace():
            j += 1
        fields.append(data[i:j])
        i = j
    i += 1
    w, h = int(fields[1]), int(fields[2])
    px = data[i:]
    inside = outside = 0
    for y in range(h):
        row = px[3 * w * y:3 * w * (y + 1)]
        for x in range(w):
            r, g, b = row[3 * x], row[3 * x + 1], row[3 * x + 2]
            if r > 150 and g < 90 and b < 90:
                py = h - 1 - y  # PDF's y grows upwards
                if x0 - 1 <= x <= x1 + 1 and y0 - 1 <= py <= y1 + 1:
                    inside += 1
                else:
                    outside += 1
    print(inside, outside)

main()
