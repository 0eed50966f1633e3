#!/usr/bin/python3
"""Where the time goes in a Chrome trace written by LibTorch's profiler (WICO_BENCH_PROFILE=FILE
of `wico bench lavt|topdown`): each operator's own time (its duration less its children's on the
same thread), summed by name, largest first.
    /usr/bin/python3 scripts/profile_summary.py FILE [--top 25]
"""
import collections
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[sys.argv.index('--top') + 1]) if '--top' in sys.argv else 25
    with open(sys.argv[1]) as f:
        trace = json.load(f)
    events = [e for e in (trace['traceEvents'] if isinstance(trace, dict) else trace)
              if e.get('ph') == 'X' and 'dur' in e]
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
    total = sum(own.values())
    print(f'{total / 1e3:.1f} ms of operator time in {len(events)} events')
    for name, us in own.most_common(top):
        print(f'{us / 1e3:9.1f} ms {100 * us / total:5.1f}%  {count[name]:6d}x  {name}')


if __name__ == '__main__':
    main()
