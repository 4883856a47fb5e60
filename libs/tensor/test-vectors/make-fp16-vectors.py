"""Writes fp16.json: IEEE binary16 vectors from a second source, CPython's struct 'e' format
(PyFloat_Pack2/Unpack2: round to nearest, ties to even). Run: python3 make-fp16-vectors.py"""
import json
import math
import random
import struct

random.seed(20261129)

# decode: a spread of bit patterns (every exponent, edge mantissas, random ones), both signs
patterns = set()
for exp in range(32):
    for mant in [0, 1, 2, 0x155, 0x200, 0x2AA, 0x3FE, 0x3FF] + random.sample(range(1024), 6):
        for sign in (0, 0x8000):
            patterns.add(sign | (exp << 10) | mant)
decode = []
for bits in sorted(patterns):
    (value,) = struct.unpack('<e', struct.pack('<H', bits))
    if math.isnan(value):
        decode.append([bits, 'NaN'])
    elif math.isinf(value):
        decode.append([bits, 'Infinity' if value > 0 else '-Infinity'])
    else:
        decode.append([bits, value])

# encode: float64 values, including exact halfway points between neighbours (ties to even)
values = [0.0, 1.0, -1.0, 65504.0, 65519.99, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 1 / 3, math.pi, 1e-8, 0.1]
for _ in range(600):
    values.append(random.uniform(-70000, 70000))
    values.append(math.copysign(2.0 ** random.uniform(-26, 16), random.choice([-1, 1])))
for bits in random.sample(range(0x7BFF), 300):
    lo = struct.unpack('<e', struct.pack('<H', bits))[0]
    hi = struct.unpack('<e', struct.pack('<H', bits + 1))[0]
    values.append((lo + hi) / 2)  # exact in float64
    values.append(-(lo + hi) / 2)
encode = []
for value in values:
    try:
        (bits,) = struct.unpack('<H', struct.pack('<e', value))
    except OverflowError:
        continue  # CPython refuses instead of giving Inf; the TS tests cover overflow separately
    encode.append([value, bits])

with open('fp16.json', 'w') as out:
    json.dump({'source': 'CPython struct format e', 'decode': decode, 'encode': encode}, out, separators=(',', ':'))
