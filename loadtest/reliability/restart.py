"""Restart after a crash: SIGKILL a server under open-loop load, start it again, time until SERVING.

    .venv/bin/python -m loadtest.reliability.restart --load-seconds 10 --rounds 3

Prints one JSON object: the load before each kill, and per round the seconds from the new process's spawn to
its first SERVING health answer (the goal: under 5 s with the default bundle built). Exit 1 when a restart took
5 s or more or did not reach SERVING. Targets only 127.0.0.1.
"""
import argparse
import json
import signal
import threading
import time

from .common import Outcomes, capacity, open_loop, server, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=10.0, help="load before each kill (capped at 120)")
    parser.add_argument("--rounds", type=int, default=3, help="kill-and-restart rounds (capped at 10)")
    parser.add_argument("--bundle", default="bundles/e5-small")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rounds, restarts, loads = min(args.rounds, 10), [], []
    for _ in range(rounds):
        spawned = time.monotonic()
        with server(bundle=args.bundle) as (proc, port):
            restarts.append(round(time.monotonic() - spawned, 3))  # server_process returns once SERVING
            cap = capacity(port, seconds=3.0)
            outcomes = Outcomes()
            load = threading.Thread(target=open_loop, args=(port, 0.7 * cap, min(args.load_seconds, 120.0),
                                                            outcomes), daemon=True)
            load.start()
            time.sleep(min(args.load_seconds, 120.0) / 2)  # mid-load: queued and running work is lost
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            load.join(180)
            loads.append({"capacity_rps": round(cap, 1), "by_code": summary(outcomes)})
    report = {"test": "restart", "rounds": rounds, "first_start_s": restarts[0],
              "restart_after_sigkill_s": restarts[1:], "load_before_kill": loads}
    text = json.dumps(report)
    print(text)
    if args.out:
        open(args.out, "w").write(text + "\n")
    return 0 if all(s < 5.0 for s in restarts[1:]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
