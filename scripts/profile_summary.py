#!/usr/bin/python3
"""Where the time goes in a Chrome trace written by LibTorch's profiler (WICO_BENCH_PROFILE=FILE
of `wico bench lavt|topdown`): each operator's own time (its duration less its children's on the
same thread), summed by name, largest first. --scope NAME keeps only the events inside the
named scopes (for example wico::mask2former::pixel_decoder) and prints those scopes' total.
Scopes (names starting wico::) are listed with their inclusive time first.
    /usr/bin/python3 scripts/profile_summary.py FILE [--top 25] [--scope NAME]
"""
import collections
import json
import sys


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(option('--top', 25))
    scope = option('--scope', None)
    with open(sys.argv[1]) as f:
        trace = json.load(f)
    events = [e for e in (trace['traceEvents'] if isinstance(trace, dict) else trace)
              if e.get('ph') == 'X' and 'dur' in e]
    scopes = collections.Counter()
    for e in events:
        if e['name'].startswith('wico::'):
            scopes[e['name']] += e['dur']
    if scope is not None:
        # Time windows of the scope (any thread: intra-op workers run inside them).
        windows = sorted((e['ts'], e['ts'] + e['dur']) for e in events if e['name'] == scope)
        if not windows:
            sys.exit(f'no event named {scope} in {sys.argv[1]}')
        def inside(e):
            return any(a <= e['ts'] and e['ts'] + e['dur'] <= b for a, b in windows)
        events = [e for e in events if inside(e) and e['name'] != scope]
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[e.get('tid')].append(e)
    own = collections.Counter()
    count = collections.Counter()
    for thread in by_thread.values():
        thread.sort(key=lambda e: (e['ts'], -e['dur']))
        stack = []  # open events: [end, name, own]
        for e in thread:
            start, end = e['ts'], e['ts'] + e['dur']
            while stack and stack[-1][0] <= start:
                done = stack.pop()
                own[done[1]] += done[2]
            if stack:
                stack[-1][2] -= e['dur']
            stack.append([end, e['name'], e['dur']])
            count[e['name']] += 1
        for done in stack:
            own[done[1]] += done[2]
    for name, us in sorted(scopes.items(), key=lambda kv: -kv[1]):
        print(f'{us / 1e3:9.1f} ms  (scope, inclusive)  {name}')
    total = sum(own.values())
    print(f'{total / 1e3:.1f} ms of operator time in {len(events)} events'
          + (f' inside {scope}' if scope else ''))
    for name, us in own.most_common(top):
        print(f'{us / 1e3:9.1f} ms {100 * us / total:5.1f}%  {count[name]:6d}x  {name}')


if __name__ == '__main__':
    main()
