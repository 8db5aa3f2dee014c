#!/usr/bin/python3
"""jget.py FILE KEY...: prints the value at the path of keys in the JSON file
(integers index arrays); strings raw, anything else as JSON. Exit 1 if the
file is not JSON or the path does not exist, 2 if it is not a JSON object
at the top at all."""
import json
import sys

try:
    v = json.load(open(sys.argv[1], "rb"))
except Exception as e:  # not JSON: the caller's check fails
    print("not JSON: %s" % e, file=sys.stderr)
    sys.exit(2)
for k in sys.argv[2:]:
    try:
        v = v[int(k)] if isinstance(v, list) else v[k]
    except (KeyError, IndexError, ValueError, TypeError):
        sys.exit(1)
print(v if isinstance(v, str) else json.dumps(v))
