#!/usr/bin/python3
"""Writes the pickle fixtures of tests/data/pickle/ (read by tests/data/pickle_test.cpp).

Run with Debian's /usr/bin/python3 from the repository root:
    /usr/bin/python3 scripts/make_pickle_fixtures.py
It writes one value covering every supported type with pickle protocols 0 to 5
(all_types_protocol<N>.pkl) and the same value as tagged JSON (all_types.json), since JSON alone
cannot tell a tuple from a list or an int from a float:
    None -> null, bool -> true/false, int -> {"int": n}, float -> {"float": x}, str -> "...",
    bytes -> {"bytes": "<hex>"}, list and set -> [...], tuple -> {"tuple": [...]},
    dict -> {"dict": [[key, value], ...]} (insertion order).
"""
import json
import os
import pickle

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'pickle')


def make_value():
    shared_list = [1, 'shared']
    shared_str = 'repeated string value'
    return {
        'none': None,
        'true': True,
        'false': False,
        'ints': [0, 1, -1, 255, 256, 65535, 65536, -65536, 2**31 - 1, -2**31, 2**31,
                 -2**31 - 1, 2**32, 2**63 - 1, -2**63, 10**15],
        'floats': [0.0, -0.0, 0.1, 1e-300, 1.5e300, -2.5, 3.141592653589793, 5e-324],
        'strs': ['', 'ascii', 'caf\u00e9', '\u65e5\u672c\u8a9e', 'emoji \U0001F600',
                 'back\\slash\nnewline\r\t', 'quote\'"', '\x00\x1a\x7f\x80\xff', 'a' * 300],
        'bytes': [b'', b'\x00\xff abc', bytes(range(256))],
        'empty': [[], (), {}, '', b''],
        'tuples': [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
        'nested': {'a': [{'b': ({'c': [[[]]]},)}]},
        'int_keys': {1: 'one', -5: 'minus five', 2**40: 'big'},
        'other_keys': {None: 'none', 2.5: 'float', b'k': 'bytes', (1, 'a'): 'tuple'},
        'set': {1, 2, 3},
        'frozenset': frozenset(['x']),
        'shared': [shared_list, shared_list, shared_str, shared_str],
        'long_list': list(range(2500)),
        'big_dict': {'k%d' % i: i for i in range(40)},
    }


def tagged(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return {'int': v}
    if isinstance(v, float):
        return {'float': v}
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return {'bytes': v.hex()}
    if isinstance(v, (list, set, frozenset)):
        return [tagged(x) for x in v]
    if isinstance(v, tuple):
        return {'tuple': [tagged(x) for x in v]}
    if isinstance(v, dict):
        return {'dict': [[tagged(k), tagged(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def main():
    os.makedirs(OUT, exist_ok=True)
    value = make_value()
    for protocol in range(6):
        with open(os.path.join(OUT, 'all_types_protocol%d.pkl' % protocol), 'wb') as f:
            pickle.dump(value, f, protocol=protocol)
    with open(os.path.join(OUT, 'all_types.json'), 'w') as f:
        json.dump(tagged(value), f, ensure_ascii=False)
        f.write('\n')


if __name__ == '__main__':
    main()
