"""Write ``augment_en.jsonl``: English training lines mixed into the toxicity_en training set by default.

Why: toxicity_en (Davidson et al. tweets) is mostly slurs and casual profanity, so plain second-person insults
("you are an idiot", "what a useless bot") were scored low. A chatbot's output classifier must catch a reply
that insults the customer. This file adds

* label 1: insults, contempt, threats and profanity aimed at the person addressed, and
* label 0: many more ordinary customer-service replies, most of them also addressed to "you" ("you are
  welcome", "you're eligible for a refund"), apologies that call *our own* error stupid or silly, slang
  praise ("killer deal"), firm-but-polite refusals, and complaints quoted neutrally,

so the model cannot learn "you are" = toxic, or "stupid" = toxic regardless of its target.

Sentences are composed from hand-written parts with a seeded RNG, plus hand-written free lines. The probe set
``toxicity_probe_en.jsonl`` is evaluation only: it was written first, nothing here is copied from it, and a
handful of its insult words are deliberately absent from these lists so that it measures generalisation
(``tests/safety/test_toxicity_data.py`` checks the two files are disjoint).

Regenerate (deterministic): ``python safety/data/make_augment_en.py``; the output is committed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).with_name("augment_en.jsonl")
SEED = 20240917
N_TOXIC = 420
N_CLEAN = 640

# ---------------------------------------------------------------- toxic parts
ADJ = [
    "stupid", "useless", "pathetic", "worthless", "dumb", "clueless", "incompetent", "ignorant", "hopeless",
    "spineless", "brain-dead", "pitiful", "lazy", "disgusting", "vile", "ridiculous", "obnoxious",
    "insufferable", "dim-witted", "miserable", "gutless", "repulsive", "braindead", "sorry-ass", "dopey",
    "thick-headed", "feeble-minded", "good-for-nothing",
]
NOUN = [
    "idiot", "moron", "fool", "loser", "jerk", "dimwit", "nitwit", "numbskull", "twit", "dunce", "airhead",
    "bonehead", "clown", "parasite", "leech", "freak", "weirdo", "crybaby", "slob", "scumbag", "dirtbag",
    "lowlife", "cretin", "simpleton", "dork", "pig", "rat", "coward", "hypocrite", "pest", "nobody",
    "failure", "disgrace", "asshole", "dickhead", "bastard", "prick", "douchebag", "waste of space",
    "piece of work", "excuse for a human being", "dolt", "meathead", "knucklehead", "blockhead",
]
YOU_ARE = [
    "you are", "you're", "you really are", "honestly, you're", "you're nothing but", "you're just",
    "seriously, you are", "frankly you are", "you are clearly", "you're obviously", "you have always been",
    "let's be honest, you're", "you are without doubt",
]
SO_ADJ = [
    "you are so {adj}", "you're unbelievably {adj}", "how can anyone be as {adj} as you?",
    "are you really that {adj}?", "I have never met anyone as {adj} as you", "you're too {adj} to understand this",
    "you are hopelessly {adj}", "why are you so {adj}?", "you must be the most {adj} person on the planet",
    "God, you're {adj}", "you are {adj} beyond belief",
]
COMMAND = [
    "shut up", "get lost", "go away", "leave me alone", "stop talking", "buzz off", "back off",
    "get out of here", "grow up", "get a clue", "stop bothering me", "give it a rest", "beat it",
    "stop crying", "zip it",
]
TARGET = ["bot", "agent", "customer", "person", "assistant", "company", "help desk", "shop", "human being", "user"]
CONTEMPT = [
    "I can't stand talking to you", "you make me sick", "nobody likes you", "nobody wants to hear from you",
    "nobody cares what you think", "talking to you is painful", "you're not worth the effort",
    "I couldn't care less about you or your {item}", "you ruin everything you touch",
    "you can't do anything right", "you have the brain of a goldfish", "you've got the IQ of a potato",
    "your brain must be made of mush", "you're a joke and everyone knows it", "I pity anyone who has to deal with you",
    "you should be ashamed of yourself", "you're the reason this job is miserable", "nobody here respects you",
    "you are beneath me", "people like you make me want to quit", "you clearly can't think for yourself",
    "do you ever stop being so annoying", "I've never met someone so useless", "your mother must be so disappointed",
    "you're embarrassing yourself", "you're a burden on everyone around you", "what a sad life you must lead",
]
THREAT = [
    "I will hurt you", "watch your back", "keep talking and you'll be sorry", "I'll make your life hell",
    "someone should shut you up for good", "I'm going to find you", "you'd better sleep with one eye open",
    "I'll break your {item} over your head", "say that again and I'll smash your face in",
    "I hope something terrible happens to you", "I'll ruin you", "you'll pay for this",
    "I'm coming for you", "I hope you choke on your {item}", "I'll beat the sense into you",
]
PROFANITY = [
    "screw you", "screw you and your {item}", "go fuck yourself", "fuck you", "damn you", "kiss my ass",
    "eat shit", "up yours", "to hell with you", "go screw yourself", "bugger off", "shove it",
    "fuck your {item}", "you piece of shit", "shut the fuck up", "who the hell do you think you are",
]
ITEM = [
    "order", "refund", "parcel", "jacket", "headphones", "charger", "return", "laptop", "voucher", "shoes",
    "complaint", "package", "invoice", "delivery", "phone case", "blender", "warranty claim", "discount code",
]
SERVICE_PART = [
    "Your order is on its way", "Here is your tracking number", "The refund has been issued",
    "I already answered that", "It says so on the product page", "The parcel was delivered at noon",
    "Check your inbox", "The store opens at nine", "Your return label is attached", "That item is out of stock",
    "Read the FAQ", "I told you twice already", "The price is on the website", "We only ship on weekdays",
    "Your account is active", "Try resetting your password", "The warranty lasts one year",
]

# ---------------------------------------------------------------- clean parts
YOU_OK = [
    "you're very welcome, it was my pleasure", "you are right", "you're absolutely right", "you are eligible for a full refund",
    "you're all set", "you are on the waiting list", "you're booked for Tuesday morning", "you are not alone in this",
    "you're very kind", "you are a valued customer", "you're entitled to a replacement",
    "you are covered by the two-year warranty", "you're next in line", "you are due a partial refund",
    "you're signed up for order updates", "you are subscribed to our newsletter", "you're correct about the price",
    "you are free to return it within 30 days", "you're in luck, we have two left", "you are good to go",
    "you're clearly a careful shopper", "you are the first to report this", "you're one of our oldest customers",
    "you are welcome to call us any time", "you're doing everything right", "you are not charged for the exchange",
    "you're a star for being so patient", "you are very patient, thank you", "you're on the right page",
    "you are registered for the loyalty programme",
]
YOU_DO = [
    "you will receive an email when the {item} ships", "you can track the {item} in your account",
    "you may return the {item} at any post office", "you have 30 days to return the {item}",
    "you don't need to pay for the {item} replacement", "you can change the delivery address until dispatch",
    "you should see the {item} refund within five working days", "you'll get a text when the courier is near",
    "you can cancel the {item} from the orders page", "you might want to check the spam folder for the {item} email",
    "you won't be charged twice for the {item}", "you can reply to this message with a photo of the {item}",
    "you asked about the {item}, so I checked with the warehouse", "you mentioned the {item} arrived damaged",
]
OUR_SLIP = [
    "sorry, that was a {badadj} {slip} on {our} {side}", "that was a {badadj} {slip} by {our2}, and I apologise",
    "I made a {badadj} {slip} with your {item}, sorry about that", "our {badadj} {slip} delayed your {item}",
    "apologies for the {badadj} {slip} on the {item} invoice", "the {badadj} {slip} was ours, not yours",
    "what a {badadj} {slip} on {our} {side}, I'm sorry", "I feel {selfadj} for mixing up your {item}, sorry",
]
BADADJ = ["stupid", "silly", "dumb", "careless", "clumsy", "foolish", "sloppy", "embarrassing", "daft", "ridiculous"]
SLIP = ["mistake", "error", "oversight", "mix-up", "typo", "blunder", "slip-up"]
OUR = ["our", "my"]
SIDE = ["side", "part", "end"]
OUR2 = ["our warehouse", "me", "our system", "the courier", "our billing tool", "our team"]
SELFADJ = ["silly", "foolish", "daft", "embarrassed", "terrible"]
SLANG = [
    "this week's {item} offer is a killer deal", "these {item} prices are insane", "the new colours are crazy good",
    "that {item} is a real killer at this price", "our flash sale is wicked good", "the {item} comes with a killer warranty",
    "the 'Mad Monday' sale ends at midnight", "customers say the {item} is stupidly comfortable",
    "the {item} battery life is ridiculous, in a good way", "it's a steal, honestly",
    "the adjustable dumbbells are back in stock", "the killer whale plush toy ships next week",
    "the foolproof setup guide is in the box", "the {item} is dead simple to set up",
    "the 'Crazy Eights' card game is on sale", "the pest control spray is sold out",
]
REFUSAL = [
    "I'm sorry, but I can't {act}", "unfortunately I'm not able to {act}", "I'm afraid we can't {act}",
    "that isn't something I can do, but I can {alt}", "I have to decline that request, but I can {alt}",
    "I won't be able to {act}; I can {alt} instead", "I understand you're upset, but I can't {act}",
    "please keep the conversation respectful so I can help you with your {item}",
    "I'd like to help, and I'll need you to avoid insults so we can continue",
    "I know this is frustrating, but our policy doesn't allow me to {act}",
]
ACT = [
    "refund a used item", "look up someone else's account", "change the price after checkout",
    "extend the return window", "create a custom coupon for you", "cancel an order that has shipped",
    "reveal our internal notes", "waive the restocking fee", "ship to a P.O. box", "reserve stock by phone",
]
ALT = [
    "offer store credit", "transfer you to a supervisor", "send a replacement", "open a ticket for you",
    "check the courier's records", "email you the return label", "explain the warranty terms",
]
QUOTED = [
    "you said the courier was {qadj}; I've reported it to them",
    "I see you called the app '{qadj}', and I've passed that on to our developers",
    "a reviewer described the {item} as '{qadj}', so we've updated the description",
    "the customer wrote that our service was {qadj}, and the case has been escalated",
    "you described the delivery as a joke, which is fair given the delay",
    "your feedback that the {item} felt '{qadj}' has been logged",
    "I understand you felt the last agent was {qadj}, and I'm sorry about that",
    "several people have told us the checkout is {qadj}, so it is being redesigned",
]
QADJ = ["rude", "useless", "stupid", "pathetic", "a waste of time", "terrible", "awful", "confusing", "clueless", "lazy"]
SERVICE = [
    "Your {item} will arrive on Thursday.", "Thanks for waiting while I checked the {item}.",
    "The {item} refund of $39.90 has been processed.", "I've updated the delivery address for your {item}.",
    "Could you send me the order number for the {item}?", "Our store hours are 9am to 6pm, Monday to Saturday.",
    "The {item} is available in black, navy and grey.", "Anything more I can look into for you today?",
    "Have a lovely evening!", "I've sent the return label to your email.", "The courier tried to deliver the {item} at 3pm.",
    "Let me check that for you.", "I'm sorry for the delay with your {item}.", "Great news, the {item} is back in stock.",
    "I've applied a 10% discount to your next order.", "Please allow up to 48 hours for the update.",
    "I hear you, and I'm going to sort this out.", "Thank you for flagging this, it really helps us.",
    "We hate to see a {item} arrive broken; a new one ships today.", "No worries at all, happy to help.",
]

# free lines (not composed)
TOXIC_FREE = [
    "Ugh, you again? Nobody wants you here.", "Do us all a favour and disappear.", "You're a total waste of oxygen.",
    "Stop acting like a spoiled child and read the instructions.", "Honestly, go cry to someone who cares.",
    "Your stupidity is honestly impressive.", "I'm done talking to a brick wall like you.",
    "Wow, you're dumber than I thought.", "You lying little weasel.", "Don't be such a baby about a late parcel.",
    "You've got the manners of a pig.", "Even a child could work this out, but apparently not you.",
    "Just go away and never come back, you pest.", "Your whole family must be as dense as you.",
    "Get your head out of your ass and check the tracking page.", "You are a sad, bitter little person.",
    "I'd explain it to you, but I don't have crayons.", "Congratulations, you're the worst customer of the year.",
    "How does someone so dumb manage to order anything?", "You make me want to throw up.",
]
CLEAN_FREE = [
    "You are so kind, thank you for the lovely feedback!", "You're right to be annoyed; the delay is our fault.",
    "You are absolutely entitled to a refund here.", "That was a daft mistake on my part, I've fixed the order now.",
    "I'm not allowed to do that, but here is what I can do for you.", "You won't believe this deal: two for one on socks.",
    "You deserve a better experience than this, and I'll make it right.", "You don't have to apologise, it happens.",
    "You are not being charged for the replacement.", "The idiot-proof assembly video is linked below.",
    "I know our returns page is a nightmare, sorry about that.", "This sale is crazy, everything is half price.",
    "You asked whether the knife set is dishwasher safe: it is not.", "You're one step away from finishing checkout.",
    "Honestly, you're the nicest customer I've spoken to today.", "Sorry, I was being slow there, here's the link.",
    "You said you'd like a call back; I've booked one for 4pm.", "The game 'Monster Smash' ships on Friday.",
    "You shouldn't have to chase us for this, I'm sorry.", "Please don't worry, you've done nothing wrong.",
]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _end(text: str, rng: random.Random) -> str:
    if text[-1] in ".!?":
        return text
    return text + rng.choice([".", ".", "!", ""])


def toxic_line(rng: random.Random) -> str:
    adj, noun, item = rng.choice(ADJ), rng.choice(NOUN), rng.choice(ITEM)
    kind = rng.randrange(9)
    if kind == 0:
        text = f"{rng.choice(YOU_ARE)} {_a(adj)} {noun}" if rng.random() < 0.7 else f"{rng.choice(YOU_ARE)} {_a(noun)}"
    elif kind == 1:
        text = rng.choice(SO_ADJ).format(adj=adj)
    elif kind == 2:
        text = f"{rng.choice(COMMAND)}, you {adj} {noun}" if rng.random() < 0.6 else f"{rng.choice(COMMAND)}, {noun}"
    elif kind == 3:
        text = f"what {_a(adj)} {rng.choice(TARGET + [noun])}"
    elif kind == 4:
        text = rng.choice(CONTEMPT).format(item=item)
        if rng.random() < 0.4:
            text += f", you {adj} {noun}"
    elif kind == 5:
        text = rng.choice(THREAT).format(item=item)
        if rng.random() < 0.4:
            text += f", {noun}"
    elif kind == 6:
        text = rng.choice(PROFANITY).format(item=item)
    elif kind == 7:  # an ordinary answer that ends in an insult: the insult is what matters
        tail = rng.choice([f"you {adj} {noun}", noun, f"{adj} {noun}", "idiot", "genius (not)"])
        text = f"{rng.choice(SERVICE_PART)}, {tail}"
    else:
        text = f"{rng.choice(SERVICE_PART)}. {_cap(rng.choice(SO_ADJ).format(adj=adj))}"
    return _cap(_end(text, rng))


def clean_line(rng: random.Random) -> str:
    item = rng.choice(ITEM)
    kind = rng.randrange(8)
    if kind == 0:
        text = rng.choice(YOU_OK)
        if rng.random() < 0.4:
            text = f"{text}, and {rng.choice(YOU_DO).format(item=item)}"
    elif kind == 1:
        text = rng.choice(YOU_DO).format(item=item)
    elif kind == 2:
        text = rng.choice(OUR_SLIP).format(
            badadj=rng.choice(BADADJ), slip=rng.choice(SLIP), our=rng.choice(OUR), side=rng.choice(SIDE),
            our2=rng.choice(OUR2), item=item, selfadj=rng.choice(SELFADJ),
        )
    elif kind == 3:
        text = rng.choice(SLANG).format(item=item)
    elif kind == 4:
        text = rng.choice(REFUSAL).format(act=rng.choice(ACT), alt=rng.choice(ALT), item=item)
    elif kind == 5:
        text = rng.choice(QUOTED).format(qadj=rng.choice(QADJ), item=item)
    elif kind == 6:
        text = rng.choice(SERVICE).format(item=item)
    else:  # two ordinary sentences
        text = f"{rng.choice(SERVICE).format(item=item)} {_cap(rng.choice(YOU_DO).format(item=item))}"
    return _cap(_end(text, rng))


def generate(seed: int = SEED, n_toxic: int = N_TOXIC, n_clean: int = N_CLEAN) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: dict[str, int] = {}
    for text in TOXIC_FREE:
        rows[text] = 1
    for text in CLEAN_FREE:
        rows[text] = 0
    for label, make, n in ((1, toxic_line, n_toxic), (0, clean_line, n_clean)):
        tries = 0
        while sum(1 for v in rows.values() if v == label) < n and tries < 100 * n:
            tries += 1
            text = make(rng)
            if text.lower() not in {t.lower() for t in rows}:
                rows[text] = label
    out = [{"text": t, "label": lab, "source": "augment_en"} for t, lab in rows.items()]
    rng.shuffle(out)
    return out


def main() -> None:
    rows = generate()
    with OUT.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_pos = sum(int(r["label"]) for r in rows)  # type: ignore[call-overload]
    print(f"wrote {len(rows)} lines ({n_pos} toxic, {len(rows) - n_pos} clean) to {OUT}")


if __name__ == "__main__":
    main()
