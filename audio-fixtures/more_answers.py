"""Sixteen more answers to the anchor items, for checking the turn rules on speech they were
not written against: new wording, other voices, thinking pauses in other places (after "but",
"and the", "which", "to", a filler) and pauses between sentences early in an answer.

The audio is not committed (the fixture folder keeps to its 10 MB budget). Make it with the
fixture generator's environment (`make_fixtures.sh` creates `.venv`), then replay the turn
rules on it (see bench/README.md, "Answers the rules were not written against"):

    audio-fixtures/.venv/bin/python audio-fixtures/more_answers.py /tmp/more-answers
    nextmark-bench asr --fast --item-first-prompt --fixtures /tmp/more-answers --out /tmp/more-fast
    nextmark-bench turns --from /tmp/more-fast --fixtures /tmp/more-answers

Files, `manifest.json` and its fields are as in this folder (README.md), made by the same code.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
from make_fixtures import Clip, P  # noqa: E402

CLIPS: list[Clip] = [

    Clip("med-chest-pain-ed", "strong", "en-us+m3", 16000, "wav", speed=160, pitch=40, seed=101, parts=[
        "My working diagnosis is a heart attack, so everything in the first ten minutes is about confirming it fast.",
        "I get a twelve lead {ECG|E C G} within ten minutes, put him on a monitor, and send a troponin.",
        "He chews three hundred milligrams of aspirin, and I only give oxygen if his saturation is under ninety four, but",
        P(2.7),
        "I don't give it routinely, because it can do harm.",
        "If the {ECG|E C G} shows {ST|S T} elevation, I activate the cath lab for primary {PCI|P C I}.",
        "Before that, I'd compare the pulses and the blood pressure in both arms, because an aortic dissection is the one thing you must not thrombolyse.",
        "And I keep pulmonary embolism on the list, so if the {ECG|E C G} is normal I repeat it and the",
        P(3.0),
        "troponin at three hours.",
    ]),
    Clip("med-sepsis-first-hour", "weak", "en-us+f2", 16000, "wav", speed=170, pitch=60, seed=102,
         wrong_claim="fluids can wait for the consultant (fluids and antibiotics within the hour)",
         parts=[
        "I think he has an infection.",
        "I'd call the consultant first and, um,",
        P(2.5),
        "let them decide about fluids.",
        "Antibiotics can probably wait until the morning.",
    ]),
    Clip("law-email-acceptance", "weak", "piper", 16000, "wav", speed=1.1, seed=103,
         wrong_claim="an acceptance must be on letterhead (an email reply can accept)",
         parts=[
        "No, an email reply doesn't count.",
        "It has to be a signed letter on company letterhead, otherwise the",
        P(2.2),
        "supplier can just walk away.",
    ]),
    Clip("law-privilege-waiver", "strong", "en-gb", 16000, "wav", speed=165, pitch=45, seed=104, parts=[
        "Probably yes, with one important exception.",
        "Privilege protects confidential communications between lawyer and client made to get legal advice.",
        P(2.0),
        "Sharing the memo with an outsider normally destroys the confidentiality, and with it the privilege.",
        "The exception is the Kovel doctrine. If the consultant was retained by counsel so that counsel could give legal advice, the sharing can be protected.",
        "But a public relations firm doing ordinary press work is usually outside it, which",
        P(2.6),
        "is why courts split on these cases.",
        "I'd also argue work product protection, which survives disclosure to a non adversary, and I'd look for a clawback agreement under rule five oh two.",
    ]),
    Clip("swe-slow-query", "weak", "piper", 16000, "wav", speed=1.0, seed=105,
         wrong_claim="restarting the database fixes slow queries (check the plan and indexes)",
         parts=[
        "I'd restart the database, because that usually clears it up.",
        "If it's still slow, I'd ask the team who wrote the",
        P(2.4),
        "query to look at it.",
    ]),
    Clip("swe-idempotent-payments", "strong", "piper", 16000, "wav", speed=1.05, seed=106, parts=[
        "The client sends an idempotency key with every payment request, a random unique id, and reuses it on each retry.",
        "The server writes the key in the same transaction as the payment, with a unique constraint on it.",
        "So if a retry arrives while the first attempt is still running, the insert fails and I return a conflict, or",
        P(2.8),
        "wait and return the first result.",
        "Once the charge is done I store the full response against the key, so any later retry just replays it.",
        "Calls to the card network go through an outbox, since delivery is at least once, and",
        P(2.3),
        "the network itself gets our key so it deduplicates too.",
        "Clients back off exponentially with jitter.",
    ]),
    Clip("fin-dcf-valuation", "weak", "en-us", 16000, "wav", speed=175, pitch=50, seed=107,
         wrong_claim="use net income and ignore capex (unlevered free cash flow after capex)",
         parts=[
        "You project net income for a few years.",
        "Then you discount it at, uh, whatever rate the bank uses, and",
        P(2.6),
        "that's the value.",
    ]),
    Clip("fin-duration-hedge", "strong", "piper", 16000, "wav", speed=1.0, seed=108, parts=[
        "A duration of seven means a one point rise in yields costs about seven percent of the portfolio's value.",
        "Convexity makes the real loss a little smaller, and the estimate gets worse for large moves.",
        "To hedge, I'd bring the duration down with an interest rate swap, paying fixed and receiving floating, because",
        P(2.9),
        "the swap's value rises when rates rise.",
        "Or I'd short Treasury futures, with the hedge ratio set from the {DV01|D V oh one} of the portfolio and of the contract.",
        "If the portfolio funds liabilities, I'd rather match the duration of assets and liabilities than take it to zero.",
    ]),
    Clip("med-sepsis-first-hour", "strong", "piper", 16000, "wav", speed=0.95, seed=201, parts=[
        "This looks like sepsis with hypotension, so I'd call for senior help straight away.",
        "Within the hour I take two sets of blood cultures, a lactate and a full set of bloods.",
        P(1.8),
        "Then I start broad spectrum antibiotics, I don't wait for results.",
        "He gets a crystalloid bolus, thirty mils per kilo, and I reassess his pressure and urine output after each one.",
        "If the mean arterial pressure is still under sixty five after the fluids, he needs noradrenaline, and that",
        P(2.6),
        "means an intensive care referral.",
        "I'd also look for the source, a chest, urine or line infection, and sort it out.",
    ]),
    Clip("law-email-acceptance", "strong", "en-us", 16000, "wav", speed=165, pitch=50, seed=202, parts=[
        "There probably is a contract, but I'd want to see the emails.",
        "The key question is whether the supplier's quote was an offer or just an invitation to treat.",
        "If it was specific enough, with price, quantity and delivery, then we accept is a valid acceptance, as long as",
        P(2.4),
        "your client didn't add new terms, which would make it a counter offer.",
        "Consideration is the price for the goods, and between businesses the intention to be bound is presumed.",
        "For goods over five hundred dollars the statute of frauds applies, but signed emails can satisfy it.",
        "If it's binding, your client can claim expectation damages, usually the extra cost of buying from",
        P(2.7),
        "another supplier.",
    ]),
    Clip("swe-idempotent-payments", "weak", "en-gb", 16000, "wav", speed=170, pitch=45, seed=203,
         wrong_claim="a client-side check prevents double charges (the server must deduplicate)",
         parts=[
        "The client should check if the payment went through before it retries.",
        "If it's not sure, it can just",
        P(2.3),
        "wait a bit longer.",
        "That should stop most double charges.",
    ]),
    Clip("fin-duration-hedge", "weak", "piper", 16000, "wav", speed=1.05, seed=204,
         wrong_claim="higher yields raise bond prices (prices fall when yields rise)",
         parts=[
        "When yields go up, bond prices go up as well.",
        P(2.0),
        "So we don't really need to hedge.",
        "Maybe buy some longer bonds.",
    ]),
    Clip("swe-slow-query", "strong", "en-us+m3", 16000, "wav", speed=165, pitch=40, seed=205, parts=[
        "First I'd check the dashboards to confirm the p ninety five latency really went up with the release.",
        "Then I'd find the slow query in pg stat statements and run explain analyze on it.",
        "After a release the usual story is a new filter or sort, so the planner falls back to a sequential scan over",
        P(2.9),
        "all fifty million rows.",
        "The fix is an index that matches the new where clause and order by, created concurrently.",
        "If the statistics are stale I'd run analyze as well.",
        "And if customers are affected now, I'd roll back first and investigate afterwards, because",
        P(2.5),
        "a rollback is cheap and safe.",
    ]),
    Clip("law-privilege-waiver", "weak", "en-us+f2", 16000, "wav", speed=165, pitch=60, seed=206,
         wrong_claim="forwarding within business never waives privilege (disclosure to a third party can waive it)",
         parts=[
        "I don't think it's waived.",
        "The consultant works for the company, sort of, so it's all",
        P(2.2),
        "internal really.",
    ]),
    Clip("fin-dcf-valuation", "strong", "en-gb", 16000, "wav", speed=160, pitch=50, seed=207, parts=[
        "I'd build a five year forecast of revenue, margins, capex and working capital.",
        "From that I get unlevered free cash flow for each year.",
        P(2.1),
        "I discount it at the weighted average cost of capital, with the cost of equity from the CAPM and beta from comparable companies.",
        "The terminal value comes from a perpetuity growth rate of around two percent, cross checked against an exit multiple.",
        "Enterprise value is the sum of the present values, and I take off net debt to get to",
        P(2.8),
        "the equity value.",
        "Finally I run a sensitivity table on the discount rate and the growth rate.",
    ]),
    Clip("med-chest-pain-ed", "weak", "piper", 16000, "wav", speed=1.0, seed=208,
         wrong_claim="wait for troponin before an ECG (ECG within ten minutes)",
         parts=[
        "I'd wait for the troponin to come back before doing anything, um,",
        P(2.5),
        "drastic.",
        "Then maybe an ECG.",
    ]),
]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: more_answers.py OUTPUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # make_clip writes beside the module's HERE; point it at the output folder.
    mf.HERE = out
    items = mf.parse_anchor_items(mf.ANCHORS)
    names = [c.filename for c in CLIPS]
    if len(set(names)) != len(names):
        raise SystemExit("duplicate file names")
    piper = mf.PiperEngine()
    entries = []
    for i, clip in enumerate(CLIPS):
        entry = mf.make_clip(clip, piper, items, serial=30240 + i)
        pauses = [(p["start_s"], p["end_s"], p["kind"]) for p in entry["pauses"]]
        print(f"[{i + 1:2d}/{len(CLIPS)}] {clip.filename} {entry['duration_s']:.2f}s pauses {pauses}", flush=True)
        entries.append(entry)
    manifest = {
        "version": 1,
        "generator": "audio-fixtures/more_answers.py",
        "analysis": {},
        "items": [{k: items[i].get(k) for k in ("id", "discipline", "band", "prompt")} for i in items],
        "clips": entries,
    }
    (out / "manifest.json").write_text(mf.to_json(manifest) + "\n", encoding="utf-8")
    if mf.PROBLEMS:
        print("PROBLEMS:\n  " + "\n  ".join(mf.PROBLEMS), file=sys.stderr)
        return 1
    print(f"wrote {len(entries)} answers and manifest.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
