"""The words of generated texts: sentences are subject + verb + object + tail, a question or an
opinion, all within one topic so that every combination reads as a plausible post; plus names, e-mail
addresses, phone numbers and the assistant's prompts and answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.lake.shape import S_POOL, SHAPE, join_rows, scatter, stream, strings, take

if TYPE_CHECKING:
    from numpy.typing import NDArray

POOL_PER_TOPIC = 2048

SUBJECTS = (
    "I", "We", "My sister", "My brother", "My roommate", "My best friend", "Our whole team", "My dad",
    "My mum", "The kids", "My partner", "Everyone at work", "My neighbour", "A friend of mine",
)  # fmt: skip
TAILS = (
    "", "", "", " today", " this morning", " last night", " after work", " with friends", " again",
    " for the first time", " on the weekend", " yesterday", " with the family", " in the rain",
    " before breakfast", " and it was worth it", " and regret nothing", " and honestly loved it",
)  # fmt: skip
ENDS = (".", ".", ".", "!", "!!", ". 10/10", " 😅", " 🙌")
QUESTIONS = (
    "What do you all think of", "Who else is obsessed with", "Is it just me or is everyone talking about",
    "Anyone else excited about", "Thoughts on", "Can we talk about",
)  # fmt: skip
OPINIONS = (
    ("Hot take: nothing beats", "."), ("Still thinking about", "."), ("Can't get enough of", "!"),
    ("Nothing makes me happier than", "."), ("Ten out of ten would recommend", "."),
    ("Honestly not sure about", "..."),
)  # fmt: skip

# topic: (verbs, objects, hashtags); every verb reads well with every object of its topic
TOPICS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("finally tried", "made", "can't stop thinking about", "fell in love with", "ordered", "shared"),
        ("homemade sourdough", "a spicy ramen", "lemon ricotta pancakes", "a huge bowl of pho",
         "vegan lasagna", "iced matcha lattes", "street tacos", "a homemade apple pie", "fresh dumplings",
         "a Neapolitan pizza", "shakshuka", "mango sticky rice"),
        ("#foodie", "#homecooking", "#brunch"),
    ),
    (
        ("just got back from", "finally booked a trip to", "can't stop thinking about", "fell in love with",
         "spent a week exploring", "still dream about"),
        ("Lisbon", "Kyoto", "the Scottish Highlands", "Mexico City", "a tiny village in the Alps",
         "Cape Town", "the Amalfi Coast", "Reykjavik", "Bali", "New Orleans", "Seoul", "the fjords"),
        ("#travel", "#wanderlust", "#travelgram"),
    ),
    (
        ("watched", "stayed up late for", "can't stop talking about", "missed", "finally got tickets for",
         "screamed through"),
        ("the derby", "last night's match", "the cup final", "the playoff game", "the marathon",
         "the penalty shootout", "the season opener", "the away game", "the semi-final", "the Grand Prix"),
        ("#matchday", "#football", "#f1"),
    ),
    (
        ("listened to", "can't stop playing", "cried a little at", "danced in the kitchen to",
         "finally bought", "discovered"),
        ("the new album", "that song from the ad", "an old jazz record", "a playlist of 90s hits",
         "the new single", "a vinyl reissue of a classic", "the live version of my favourite song"),
        ("#nowplaying", "#music", "#vinyl"),
    ),
    (
        ("finally set up", "spent all weekend fixing", "upgraded", "gave up on", "broke",
         "wrote a long thread about"),
        ("my home server", "the new phone", "an old laptop", "the smart thermostat",
         "a Raspberry Pi project", "the office printer", "my mechanical keyboard", "the Wi-Fi router",
         "a side project in Rust", "my password manager"),
        ("#tech", "#homelab", "#programming"),
    ),
    (
        ("spent the afternoon with", "took a hundred photos of", "cuddled", "bought a new bed for",
         "finally met", "laughed for hours at"),
        ("a rescue puppy", "the neighbour's cat", "two tiny kittens", "an old greyhound",
         "a very loud parrot", "our dog", "a hamster named Toast"),
        ("#dogsoftwitter", "#catsofinstagram", "#adoptdontshop"),
    ),
    (
        ("binge-watched", "finally watched", "fell asleep during", "rewatched", "can't stop talking about",
         "cried at the end of"),
        ("the season finale", "that new sci-fi series", "an old Kurosawa film",
         "the documentary everyone recommends", "the latest superhero movie", "a cheesy holiday movie",
         "the anime my cousin loves", "the true-crime show"),
        ("#movienight", "#bingewatching", "#film"),
    ),
    (
        ("finished", "couldn't put down", "started", "recommended", "reread", "borrowed"),
        ("a thriller from the library", "the book club pick", "a classic Russian novel",
         "the new fantasy trilogy", "a memoir about climbing", "a short story collection",
         "a graphic novel", "a poetry collection"),
        ("#amreading", "#booktok", "#bookclub"),
    ),
    (
        ("finished", "survived", "signed up for", "trained all month for", "skipped", "finally completed"),
        ("a 10k run", "a three-hour hike", "the morning yoga class", "a spin class", "a half marathon",
         "leg day", "a cold swim in the lake", "a climbing session"),
        ("#running", "#fitness", "#hiking"),
    ),
    (
        ("complained about", "survived", "laughed about", "sat through", "ranted about",
         "barely made it through"),
        ("the Monday meeting", "the morning commute", "a train delay", "the new open-plan office",
         "another all-hands", "the quarterly review", "the traffic on the bridge", "a twelve-hour shift"),
        ("#mondays", "#worklife", "#commute"),
    ),
    (
        ("planted", "harvested", "finally repotted", "watered", "took photos of", "worried about"),
        ("the tomatoes", "a row of sunflowers", "our first zucchini", "the basil on the balcony",
         "a tiny lemon tree", "the herb garden", "some very stubborn roses", "the strawberries"),
        ("#gardening", "#growyourown", "#plantsofinstagram"),
    ),
    (
        ("finally beat", "spent all night on", "gave up on", "replayed", "got hooked on", "streamed"),
        ("the final boss", "a cozy farming game", "the new open-world RPG", "an old Nintendo classic",
         "the ranked ladder", "a co-op puzzle game", "the new expansion", "a retro arcade game"),
        ("#gaming", "#indiegames", "#gamer"),
    ),
)  # fmt: skip

REPLY_OPENERS = (
    "Totally agree.", "Same here!", "Ha, so true.", "Wait, really?", "Congrats!", "This made my day.",
    "Hard disagree.", "Love this.", "Where was this?", "Thanks for sharing!", "Oh no.",
    "Couldn't agree more.",
)  # fmt: skip
QUOTE_OPENERS = (
    "This.", "Worth a read.", "Couldn't have said it better.", "Look at this 👇", "Adding my two cents:",
    "Saving this for later.", "Exactly what I said yesterday.",
)  # fmt: skip
EMAIL_FRAMES = (
    ("Reach me at", "."), ("DM me or email", " for details."), ("Questions? Write to", "."),
    ("Send your photos to", "!"), ("My new address is", ", update your contacts."),
)  # fmt: skip
PHONE_FRAMES = (
    ("Call me on", "."), ("Text", " if you want a spot."), ("Bookings:", "."), ("New number:", ", save it!"),
    ("WhatsApp", " for the tickets."),
)  # fmt: skip
PROMPTS = (
    ("Can you recommend something like", "?"), ("Write a short post about", "."),
    ("Summarise what people are saying about", "."), ("Give me three tips for enjoying", "."),
    ("Explain why everyone is talking about", "."), ("Draft a funny caption for a photo of", "."),
    ("What should I know about", "?"),
)  # fmt: skip
PII_PROMPTS = (
    ("My email is {}, can you draft a reply to my landlord?"),
    ("Write a flyer for my bake sale, contact {}."),
    ("Can you remember my number {} for later?"),
)
ANSWER_OPENERS = ("Sure!", "Good question.", "Here you go.", "Happy to help.", "Great idea.", "Of course.")
ANSWERS = (
    "It depends a lot on your budget and how much time you have.",
    "Many people find it helps to start small and build from there.",
    "Reviews are mostly positive, although opinions vary.",
    "Here is a short draft you can adapt to your own voice.",
    "A good first step is to check what is available near you.",
    "Keep it short, friendly and specific.",
    "Most people mention the atmosphere more than anything else.",
    "If you are unsure, ask a friend who has tried it before.",
    "You might also enjoy something similar with a different twist.",
    "Timing matters, so plan ahead if you can.",
    "The key points are quality, price and convenience.",
    "Let me know if you want a longer version.",
    "I can also suggest a few alternatives if that helps.",
    "People on the platform seem to love it, especially on weekends.",
    "Try to avoid the busiest hours if you can.",
    "A little preparation goes a long way here.",
    "There are plenty of beginner-friendly options.",
    "Feel free to change the tone to match your style.",
    "Remember to take breaks and enjoy the process.",
    "That should give you a solid starting point.",
)
FIRST_NAMES = (
    "anna", "lukas", "sofia", "mateo", "emma", "noah", "mia", "leon", "chloe", "hugo", "giulia", "marco",
    "lucia", "pablo", "eva", "jan", "zofia", "lars", "ingrid", "aoife", "liam", "olivia", "james",
    "amelia", "priya", "arjun", "yuki", "haruto", "mina", "jiwoo", "ana", "joao", "camila", "diego",
    "fatima", "omar", "amara", "kwame", "chen", "wei", "sara", "ali", "nina", "felix", "clara", "theo",
    "ella", "max", "isla", "rafael", "lea", "tom", "kai", "zoe", "maya", "leila", "ivan", "olga", "elif",
    "can",
)  # fmt: skip
LAST_NAMES = (
    "smith", "mueller", "rossi", "garcia", "martin", "dubois", "kowalski", "jansen", "nielsen", "murphy",
    "silva", "santos", "sato", "suzuki", "kim", "park", "patel", "sharma", "khan", "nguyen", "wang",
    "lopez", "hernandez", "fischer", "weber", "bernard", "ferrari", "novak", "horvat", "andersson",
    "virtanen", "oconnor", "walsh", "costa", "moreau", "schmidt", "meyer", "bianchi", "romero", "torres",
    "yilmaz", "demir", "okafor", "mensah", "hassan", "cohen", "levi", "brown", "taylor", "wilson", "jones",
    "davies", "evans", "ito", "tanaka", "zhang", "singh", "ricci", "lambert", "berg",
)  # fmt: skip
HANDLE_SEPARATORS = ("_", "", ".", "_")
EMAIL_DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.com", "proton.me", "web.de", "gmx.de", "orange.fr", "libero.it",
    "hotmail.co.uk", "icloud.com",
)  # fmt: skip


class Vocabulary:
    """Arrow arrays of the word lists, and the pool of topic sentences every text is built from."""

    def __init__(self, seed: int) -> None:
        self.first_names = strings(FIRST_NAMES)
        self.last_names = strings(LAST_NAMES)
        self.separators = strings(HANDLE_SEPARATORS)
        self.domains = strings(EMAIL_DOMAINS)
        self.hashtags = strings([tag for _, _, tags in TOPICS for tag in tags[:3]])
        self.openers = strings(REPLY_OPENERS + QUOTE_OPENERS)
        self.answer_openers = strings(ANSWER_OPENERS)
        self.answers = strings(ANSWERS)
        self.email_frames = (strings([a for a, _ in EMAIL_FRAMES]), strings([b for _, b in EMAIL_FRAMES]))
        self.phone_frames = (strings([a for a, _ in PHONE_FRAMES]), strings([b for _, b in PHONE_FRAMES]))
        self.prompt_frames = (strings([a for a, _ in PROMPTS]), strings([b for _, b in PROMPTS]))
        self.objects = [strings(objects) for _, objects, _ in TOPICS]
        self.sentences = self._pool(stream(seed, S_POOL))

    def _pool(self, rng: np.random.Generator) -> pa.Array:
        size = POOL_PER_TOPIC
        subjects, tails, ends = strings(SUBJECTS), strings(TAILS), strings(ENDS)
        questions = strings(QUESTIONS)
        opinion_heads, opinion_ends = strings([a for a, _ in OPINIONS]), strings([b for _, b in OPINIONS])
        chunks = []
        for (verbs, objects, _), object_array in zip(TOPICS, self.objects, strict=True):
            obj = take(object_array, rng.integers(0, len(objects), size))
            subject = take(subjects, rng.integers(0, len(SUBJECTS), size))
            verb = take(strings(verbs), rng.integers(0, len(verbs), size))
            tail = take(tails, rng.integers(0, len(TAILS), size))
            end = take(ends, rng.integers(0, len(ENDS), size))
            statement = join_rows([join_rows([subject, verb, obj], " "), tail, end], "")
            question = join_rows(
                [join_rows([take(questions, rng.integers(0, len(QUESTIONS), size)), obj], " "), "?"], ""
            )
            which = rng.integers(0, len(OPINIONS), size)
            opinion = join_rows(
                [join_rows([take(opinion_heads, which), obj], " "), take(opinion_ends, which)], ""
            )
            form = np.searchsorted([0.65, 0.85], rng.random(size), side="right").astype(np.int8)
            chunks.append(pc.choose(pa.array(form), statement, question, opinion))
        return pa.concat_arrays(chunks)

    def sentences_for(
        self, rng: np.random.Generator, topic: NDArray[np.int64], mask: NDArray[np.bool_] | None = None
    ) -> pa.Array:
        """One sentence of the given topic per row (null where ``mask``)."""
        index = topic * POOL_PER_TOPIC + rng.integers(0, POOL_PER_TOPIC, topic.size)
        return take(self.sentences, index, mask)

    def emails(self, rng: np.random.Generator, size: int) -> pa.Array:
        """Plausible personal e-mail addresses."""
        number = pc.cast(pa.array(rng.integers(1, 100, size), mask=rng.random(size) < 0.5), pa.string())
        return join_rows(
            [
                take(self.first_names, rng.integers(0, len(FIRST_NAMES), size)),
                take(self.separators, rng.integers(0, len(HANDLE_SEPARATORS), size)),
                take(self.last_names, rng.integers(0, len(LAST_NAMES), size)),
                number,
                "@",
                take(self.domains, rng.integers(0, len(EMAIL_DOMAINS), size)),
            ],
            "",
        )

    def phones(self, rng: np.random.Generator, size: int) -> pa.Array:
        """Phone numbers in US, UK, German and French formats."""

        def digits(width: int) -> pa.Array:
            return pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**width, size)), pa.string()), width, "0")

        area = pc.cast(pa.array(rng.integers(201, 990, size)), pa.string())
        formats = [
            join_rows(["+1", area, join_rows([digits(3), digits(4)], "-")], " "),
            join_rows(["(", area, ") ", digits(3), "-", digits(4)], ""),
            join_rows(["+44 7", digits(3), " ", digits(6)], ""),
            join_rows(["+49 15", digits(1), " ", digits(8)], ""),
            join_rows(["+33 6", digits(2), digits(2), digits(2), digits(2)], " "),
        ]
        return pc.choose(pa.array(rng.integers(0, len(formats), size).astype(np.int8)), *formats)

    def personal_data(self, rng: np.random.Generator, rows: int) -> pa.Array:
        """For each row: null, or a sentence giving an e-mail address or a phone number."""
        kind = np.searchsorted([SHAPE.email_share, SHAPE.email_share + SHAPE.phone_share], rng.random(rows))
        email, phone = kind == 0, kind == 1
        emails = self._framed(rng, self.email_frames, self.emails(rng, int(email.sum())))
        phones = self._framed(rng, self.phone_frames, self.phones(rng, int(phone.sum())))
        return pc.coalesce(scatter(emails, email), scatter(phones, phone))

    @staticmethod
    def _framed(rng: np.random.Generator, frames: tuple[pa.Array, pa.Array], values: pa.Array) -> pa.Array:
        which = rng.integers(0, len(frames[0]), len(values))
        return join_rows([join_rows([take(frames[0], which), values], " "), take(frames[1], which)], "")
