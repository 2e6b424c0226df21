"""A seeded English -> German toy grammar with a general and a task text domain.

Both domains share the grammar and almost all of the vocabulary; they differ in which nouns are
likely (city and work vs. nature and animals) and, above all, in twelve ambiguous English nouns
whose German translation depends on the domain ("bank": "Bank" in the general domain, "Ufer" in
the task domain). In the general domain the task sense occurs only with a fixed cue phrase
("the bank of the river") and the general sense never shares a sentence with that cue, so an MT
trained on general text learns "bank" -> "Bank" unless the cue is there. Task sentences carry the
cue only sometimes, so that MT is wrong on the rest: the situation of the paper, where task data
must teach the ASR side to steer a frozen MT. Five task senses also have an unambiguous general
synonym ("shore" -> "Ufer") that a steering exporter can aim at.

Minimal pairs (ship/sheep, bank/tank, crane/train, tree/three, old/cold, watches/washes, ...)
are in the vocabulary on purpose: they are what a small ASR model confuses.

German side: verb-second main clauses (also after a fronted adverb), verb-final subordinate
clauses, inverted main clauses after a fronted subordinate clause, perfect and modal verb
brackets, nominative/accusative/dative articles, strong/weak/mixed adjective endings, plurals.
"""

import itertools
import random
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

DOMAINS = ("general", "task")
MIN_WORDS, MAX_WORDS = 4, 8


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # "m", "f", "n"
    topic: str = "both"  # "general" / "task": three times likelier in that domain
    animate: bool = False

    @property
    def de_dat_pl(self) -> str:
        return self.de_pl if self.de_pl.endswith(("n", "s")) else self.de_pl + "n"


@dataclass(frozen=True)
class AmbiguousNoun:
    en: str
    en_pl: str
    general: Tuple[str, str, str]  # German singular, plural, gender
    task: Tuple[str, str, str]
    cue: Tuple[str, str]  # postmodifier that marks the task sense in general text

    @property
    def cue_noun(self) -> str:
        return self.cue[0].split()[-1]

    def sense(self, domain: str) -> Noun:
        de, de_pl, gender = self.general if domain == "general" else self.task
        return Noun(self.en, self.en_pl, de, de_pl, gender)


def _nouns(topic: str, animate: bool, rows: str) -> List[Noun]:
    """Rows of `en en_pl de de_pl gender`."""
    return [Noun(*line.split(), topic=topic, animate=animate) for line in rows.strip().splitlines()]


NOUNS = tuple(
    _nouns("both", True, """
man men Mann Männer m
woman women Frau Frauen f
child children Kind Kinder n
girl girls Mädchen Mädchen n
teacher teachers Lehrer Lehrer m
friend friends Freund Freunde m
cook cooks Koch Köche m
sister sisters Schwester Schwestern f
brother brothers Bruder Brüder m
mother mothers Mutter Mütter f
father fathers Vater Väter m
king kings König Könige m
queen queens Königin Königinnen f
painter painters Maler Maler m
singer singers Sänger Sänger m
guest guests Gast Gäste m
dog dogs Hund Hunde m
cat cats Katze Katzen f
""")
    + _nouns("general", True, """
doctor doctors Arzt Ärzte m
baker bakers Bäcker Bäcker m
driver drivers Fahrer Fahrer m
worker workers Arbeiter Arbeiter m
lawyer lawyers Anwalt Anwälte m
judge judges Richter Richter m
""")
    + _nouns("task", True, """
fisherman fishermen Fischer Fischer m
hunter hunters Jäger Jäger m
farmer farmers Landwirt Landwirte m
bird birds Vogel Vögel m
fish fish Fisch Fische m
duck ducks Ente Enten f
horse horses Pferd Pferde n
cow cows Kuh Kühe f
sheep sheep Schaf Schafe n
goat goats Ziege Ziegen f
fox foxes Fuchs Füchse m
owl owls Eule Eulen f
frog frogs Frosch Frösche m
mouse mice Maus Mäuse f
hen hens Henne Hennen f
pig pigs Schwein Schweine n
deer deer Reh Rehe n
wolf wolves Wolf Wölfe m
snake snakes Schlange Schlangen f
bee bees Biene Bienen f
eagle eagles Adler Adler m
""")
    + _nouns("both", False, """
table tables Tisch Tische m
chair chairs Stuhl Stühle m
door doors Tür Türen f
window windows Fenster Fenster n
book books Buch Bücher n
cup cups Tasse Tassen f
bed beds Bett Betten n
house houses Haus Häuser n
garden gardens Garten Gärten m
picture pictures Bild Bilder n
bottle bottles Flasche Flaschen f
kitchen kitchens Küche Küchen f
bread breads Brot Brote n
apple apples Apfel Äpfel m
pear pears Birne Birnen f
cake cakes Kuchen Kuchen m
hat hats Hut Hüte m
coat coats Mantel Mäntel m
bridge bridges Brücke Brücken f
""")
    + _nouns("general", False, """
car cars Auto Autos n
office offices Büro Büros n
street streets Straße Straßen f
shop shops Laden Läden m
train trains Zug Züge m
computer computers Computer Computer m
phone phones Telefon Telefone n
key keys Schlüssel Schlüssel m
box boxes Kiste Kisten f
bag bags Tasche Taschen f
letter letters Brief Briefe m
cap caps Mütze Mützen f
lamp lamps Lampe Lampen f
bus buses Bus Busse m
ship ships Schiff Schiffe n
school schools Schule Schulen f
city cities Stadt Städte f
clock clocks Uhr Uhren f
shirt shirts Hemd Hemden n
shoe shoes Schuh Schuhe m
ball balls Ball Bälle m
pan pans Pfanne Pfannen f
pill pills Tablette Tabletten f
tank tanks Tank Tanks m
truck trucks Lastwagen Lastwagen m
meal meals Mahlzeit Mahlzeiten f
sock socks Socke Socken f
""")
    + _nouns("task", False, """
river rivers Fluss Flüsse m
lake lakes See Seen m
forest forests Wald Wälder m
cave caves Höhle Höhlen f
tree trees Baum Bäume m
hill hills Hügel Hügel m
mountain mountains Berg Berge m
meadow meadows Wiese Wiesen f
field fields Feld Felder n
stone stones Stein Steine m
nest nests Nest Nester n
island islands Insel Inseln f
flower flowers Blume Blumen f
leaf leaves Blatt Blätter n
beach beaches Strand Strände m
shore shores Ufer Ufer n
source sources Quelle Quellen f
yard yards Hof Höfe m
beak beaks Schnabel Schnäbel m
enclosure enclosures Gehege Gehege n
zoo zoos Zoo Zoos m
hut huts Hütte Hütten f
farm farms Bauernhof Bauernhöfe m
barn barns Scheune Scheunen f
castle castles Burg Burgen f
boat boats Boot Boote n
tent tents Zelt Zelte n
fire fires Feuer Feuer n
""")
)

AMBIGUOUS = (
    AmbiguousNoun("bank", "banks", ("Bank", "Banken", "f"), ("Ufer", "Ufer", "n"),
                  ("of the river", "des Flusses")),
    AmbiguousNoun("bat", "bats", ("Schläger", "Schläger", "m"), ("Fledermaus", "Fledermäuse", "f"),
                  ("in the cave", "in der Höhle")),
    AmbiguousNoun("seal", "seals", ("Siegel", "Siegel", "n"), ("Robbe", "Robben", "f"),
                  ("on the beach", "am Strand")),
    AmbiguousNoun("spring", "springs", ("Feder", "Federn", "f"), ("Quelle", "Quellen", "f"),
                  ("on the mountain", "auf dem Berg")),
    AmbiguousNoun("plant", "plants", ("Fabrik", "Fabriken", "f"), ("Pflanze", "Pflanzen", "f"),
                  ("in the garden", "im Garten")),
    AmbiguousNoun("trunk", "trunks", ("Koffer", "Koffer", "m"), ("Stamm", "Stämme", "m"),
                  ("of the tree", "des Baumes")),
    AmbiguousNoun("court", "courts", ("Gericht", "Gerichte", "n"), ("Hof", "Höfe", "m"),
                  ("of the castle", "der Burg")),
    AmbiguousNoun("crane", "cranes", ("Kran", "Kräne", "m"), ("Kranich", "Kraniche", "m"),
                  ("at the lake", "am See")),
    AmbiguousNoun("bill", "bills", ("Rechnung", "Rechnungen", "f"), ("Schnabel", "Schnäbel", "m"),
                  ("of the duck", "der Ente")),
    AmbiguousNoun("pen", "pens", ("Stift", "Stifte", "m"), ("Gehege", "Gehege", "n"),
                  ("at the zoo", "im Zoo")),
    AmbiguousNoun("scale", "scales", ("Waage", "Waagen", "f"), ("Schuppe", "Schuppen", "f"),
                  ("of the fish", "des Fisches")),
    AmbiguousNoun("match", "matches", ("Spiel", "Spiele", "n"), ("Streichholz", "Streichhölzer", "n"),
                  ("by the fire", "am Feuer")),
)

def steering_words() -> List[str]:
    """The ambiguous nouns and the general-domain synonyms of their task senses ("shore" for
    "bank" -> "Ufer"). The corpus keeps each one a single subword piece: an exporter emits one
    vector per 1-best token, so it can only aim "bank" at "shore" if both are one token."""
    task_senses = {word.task[0] for word in AMBIGUOUS}
    return [word.en for word in AMBIGUOUS] + [n.en for n in NOUNS if n.de in task_senses]


# Per noun slot: how often an ambiguous noun fills it, and (general domain) how often in its
# cued task sense.
P_AMBIGUOUS = {"general": 0.12, "task": 0.45}
P_GENERAL_TASK_SENSE = 0.2
P_TASK_CUE = 0.25


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str
    stem: str = ""  # attributive stem where it differs: dunkel -> dunkl-e
    animate_only: bool = False


ADJECTIVES = tuple(
    Adjective(*row.split()) for row in """
old alt
cold kalt
young jung
big groß
small klein
new neu
red rot
green grün
blue blau
white weiß
black schwarz
brown braun
yellow gelb
beautiful schön
ugly hässlich
warm warm
wet nass
dry trocken
clean sauber
dirty schmutzig
heavy schwer
light leicht
bright hell
dark dunkel dunkl
loud laut
quiet leise leis
long lang
short kurz
strange seltsam
famous berühmt
empty leer
full voll
cheap billig
expensive teuer teur
slow langsam
fast schnell
wild wild
good gut
bad schlecht
""".strip().splitlines()
) + (
    Adjective("tired", "müde", "müd", True),
    Adjective("hungry", "hungrig", "", True),
    Adjective("happy", "glücklich", "", True),
)


@dataclass(frozen=True)
class Verb:
    en: str
    en_3sg: str
    en_pp: str
    de: str  # infinitive, also the plural present
    de_3sg: str
    de_pp: str
    aux: str = "haben"


def _verbs(rows: str) -> Tuple[Verb, ...]:
    return tuple(Verb(*line.split()) for line in rows.strip().splitlines())


TRANSITIVE = _verbs("""
see sees seen sehen sieht gesehen
find finds found finden findet gefunden
like likes liked mögen mag gemocht
paint paints painted malen malt gemalt
draw draws drawn zeichnen zeichnet gezeichnet
watch watches watched beobachten beobachtet beobachtet
wash washes washed waschen wäscht gewaschen
describe describes described beschreiben beschreibt beschrieben
visit visits visited besuchen besucht besucht
photograph photographs photographed fotografieren fotografiert fotografiert
clean cleans cleaned putzen putzt geputzt
reach reaches reached erreichen erreicht erreicht
need needs needed brauchen braucht gebraucht
buy buys bought kaufen kauft gekauft
sell sells sold verkaufen verkauft verkauft
smell smells smelled riechen riecht gerochen
touch touches touched berühren berührt berührt
hold holds held halten hält gehalten
carry carries carried tragen trägt getragen
show shows shown zeigen zeigt gezeigt
love loves loved lieben liebt geliebt
count counts counted zählen zählt gezählt
feed feeds fed füttern füttert gefüttert
hear hears heard hören hört gehört
lose loses lost verlieren verliert verloren
catch catches caught fangen fängt gefangen
check checks checked prüfen prüft geprüft
fetch fetches fetched holen holt geholt
""")

INTRANSITIVE = _verbs("""
sleep sleeps slept schlafen schläft geschlafen
swim swims swum schwimmen schwimmt geschwommen sein
run runs run laufen läuft gelaufen sein
wait waits waited warten wartet gewartet
sing sings sung singen singt gesungen
work works worked arbeiten arbeitet gearbeitet
laugh laughs laughed lachen lacht gelacht
sit sits sat sitzen sitzt gesessen
stand stands stood stehen steht gestanden
play plays played spielen spielt gespielt
eat eats eaten essen isst gegessen
dance dances danced tanzen tanzt getanzt
jump jumps jumped springen springt gesprungen sein
walk walks walked wandern wandert gewandert sein
""")

# Verbs taking a "that" clause (dass + verb-final).
SAYING = _verbs("""
say says said sagen sagt gesagt
think thinks thought denken denkt gedacht
know knows known wissen weiß gewusst
believe believes believed glauben glaubt geglaubt
hear hears heard hören hört gehört
""")

MODALS = (("can", "kann", "können"), ("must", "muss", "müssen"), ("will", "wird", "werden"),
          ("should", "soll", "sollen"))
FREQUENCY_ADVERBS = (("often", "oft"), ("always", "immer"), ("never", "nie"),
                     ("sometimes", "manchmal"), ("usually", "meistens"), ("rarely", "selten"))
TIME_ADVERBS = (("today", "heute"), ("now", "jetzt"), ("here", "hier"), ("there", "dort"))
# English preposition, German preposition, German case it governs.
PREPOSITIONS = (("in", "in", "dat"), ("on", "auf", "dat"), ("under", "unter", "dat"),
                ("behind", "hinter", "dat"), ("next to", "neben", "dat"), ("with", "mit", "dat"),
                ("at", "an", "dat"), ("for", "für", "acc"), ("without", "ohne", "acc"))
CONTRACTIONS = {("in", "dem"): "im", ("an", "dem"): "am"}
CONJUNCTIONS = (("because", "weil"), ("although", "obwohl"), ("while", "während"),
                ("when", "wenn"), ("if", "falls"))
PRONOUNS = (("he", "er", False), ("she", "sie", False), ("they", "sie", True), ("we", "wir", True))

CASES = ("nom", "acc", "dat")
DEFINITE = {"nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
            "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
            "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"}}
# Endings of "dies-" (der-words) and of "ein"/"mein" (ein-words; plural only for possessives).
DER_WORD = {"nom": {"m": "er", "f": "e", "n": "es", "pl": "e"},
            "acc": {"m": "en", "f": "e", "n": "es", "pl": "e"},
            "dat": {"m": "em", "f": "er", "n": "em", "pl": "en"}}
EIN_WORD = {"nom": {"m": "", "f": "e", "n": "", "pl": "e"},
            "acc": {"m": "en", "f": "e", "n": "", "pl": "e"},
            "dat": {"m": "em", "f": "er", "n": "em", "pl": "en"}}
# Adjective endings: weak after der-words (and ein-words in the plural), mixed after ein-words
# in the singular, strong without a determiner (only plural here: bare, numerals).
WEAK = {"nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
        "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"}}
MIXED = {"nom": {"m": "er", "f": "e", "n": "es"},
         "acc": {"m": "en", "f": "e", "n": "es"},
         "dat": {"m": "en", "f": "en", "n": "en"}}
STRONG_PLURAL = {"nom": "e", "acc": "e", "dat": "en"}

# Determiner kinds: (English singular, English plural or None, German stem, declension).
DETERMINERS = (
    ("the", "the", "", "definite"),
    ("a", None, "ein", "ein"),
    ("this", "these", "dies", "der"),
    ("my", "my", "mein", "ein"),
    ("his", "his", "sein", "ein"),
    ("her", "her", "ihr", "ein"),
    ("our", "our", "unser", "ein"),
    (None, "", "", "bare"),
    (None, "two", "zwei", "numeral"),
    (None, "three", "drei", "numeral"),
    (None, "four", "vier", "numeral"),
)
DETERMINER_WEIGHTS = (10, 4, 2, 1, 1, 1, 1, 2, 1, 1, 1)


@dataclass(frozen=True)
class NounPhrase:
    noun: Noun
    plural: bool
    determiner: tuple = DETERMINERS[0]
    adjective: Optional[Adjective] = None
    postmodifier: Optional[Tuple[str, str]] = None

    @property
    def definite(self) -> bool:
        return self.determiner[3] in ("definite", "der")

    def en(self) -> List[str]:
        det = self.determiner[1] if self.plural else self.determiner[0]
        words = [self.adjective.en] if self.adjective else []
        words.append(self.noun.en_pl if self.plural else self.noun.en)
        if det == "a" and words[0][0] in "aeiou":
            det = "an"
        post = self.postmodifier[0].split() if self.postmodifier else []
        return ([det] if det else []) + words + post

    def de(self, case: str) -> List[str]:
        _, _, stem, kind = self.determiner
        key = "pl" if self.plural else self.noun.gender
        if kind == "definite":
            det, endings = DEFINITE[case][key], WEAK
        elif kind == "der":
            det, endings = stem + DER_WORD[case][key], WEAK
        elif kind == "ein":
            det, endings = stem + EIN_WORD[case][key], WEAK if self.plural else MIXED
        else:  # bare plural or numeral: adjective carries the strong ending
            det, endings = stem, {c: {"pl": STRONG_PLURAL[c]} for c in CASES}
        words = [det] if det else []
        if self.adjective:
            words.append((self.adjective.stem or self.adjective.de) + endings[case][key])
        if self.plural:
            words.append(self.noun.de_dat_pl if case == "dat" else self.noun.de_pl)
        else:
            words.append(self.noun.de)
        return words + (self.postmodifier[1].split() if self.postmodifier else [])


@dataclass(frozen=True)
class Pronoun:
    en_word: str
    de_word: str
    plural: bool

    def en(self) -> List[str]:
        return [self.en_word]

    def de(self, case: str) -> List[str]:
        return [self.de_word]


def prepositional_phrase(prep: tuple, np: NounPhrase) -> Tuple[List[str], List[str]]:
    en_prep, de_prep, case = prep
    de = np.de(case)
    contracted = CONTRACTIONS.get((de_prep, de[0]))
    de = [contracted] + de[1:] if contracted else [de_prep] + de
    return en_prep.split() + np.en(), de


@dataclass(frozen=True)
class Clause:
    """One finite clause; `de(order)` places the verb for a main, inverted or subordinate clause."""

    subject: object  # NounPhrase or Pronoun
    verb: Optional[Verb]  # None: copula with `predicate`
    obj: Optional[NounPhrase] = None
    predicate: Optional[Adjective] = None
    pp: Optional[Tuple[List[str], List[str]]] = None
    tense: str = "present"  # "present", "perfect", or a modal's English word
    frequency: Optional[Tuple[str, str]] = None
    time: Optional[Tuple[str, str]] = None
    time_fronted: bool = False

    def _modal(self):
        return next((m for m in MODALS if m[0] == self.tense), None)

    def en(self) -> List[str]:
        plural = self.subject.plural
        freq = [self.frequency[0]] if self.frequency else []
        modal = self._modal()
        if self.verb is None:
            if modal:
                head = [modal[0]] + freq + ["be"]
            else:
                head = ["are" if plural else "is"] + freq
            rest = [self.predicate.en]
        else:
            if self.tense == "perfect":
                head = ["have" if plural else "has"] + freq + [self.verb.en_pp]
            elif modal:
                head = [modal[0]] + freq + [self.verb.en]
            else:
                head = freq + [self.verb.en if plural else self.verb.en_3sg]
            rest = self.obj.en() if self.obj else []
        rest = rest + (self.pp[0] if self.pp else [])
        words = self.subject.en() + head + rest
        if self.time:
            words = [self.time[0]] + words if self.time_fronted else words + [self.time[0]]
        return words

    def de(self, order: str) -> List[str]:
        plural = self.subject.plural
        modal = self._modal()
        if self.verb is None:
            finite = (modal[2] if plural else modal[1]) if modal else ("sind" if plural else "ist")
            right = [self.predicate.de, "sein"] if modal else [self.predicate.de]
        elif self.tense == "perfect":
            aux = {"haben": ("hat", "haben"), "sein": ("ist", "sind")}[self.verb.aux]
            finite, right = aux[1] if plural else aux[0], [self.verb.de_pp]
        elif modal:
            finite, right = modal[2] if plural else modal[1], [self.verb.de]
        else:
            finite, right = self.verb.de if plural else self.verb.de_3sg, []

        # Middle field: a time adverb first; a frequency adverb after a definite object
        # but before an indefinite one ("sieht die Bank oft" / "sieht oft eine Bank").
        middle = [self.time[1]] if self.time and not self.time_fronted else []
        freq = [self.frequency[1]] if self.frequency else []
        if self.obj is not None and self.obj.definite:
            middle += self.obj.de("acc") + freq
        else:
            middle += freq + (self.obj.de("acc") if self.obj is not None else [])
        middle += self.pp[1] if self.pp else []

        subject = self.subject.de("nom")
        if order == "sub":
            return subject + middle + right + [finite]
        if order == "inverted":
            return [finite] + subject + middle + right
        if self.time_fronted:
            return [self.time[1], finite] + subject + middle + right
        return subject + [finite] + middle + right


class _Generator:
    def __init__(self, domain: str, rng: random.Random):
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
        self.domain, self.rng = domain, rng
        self.nouns = {}  # animate -> (nouns, cumulative weights) of this domain
        for animate in (False, True):
            nouns = [n for n in NOUNS if n.animate == animate]
            weights = [3 if n.topic == domain else 2 if n.topic == "both" else 1 for n in nouns]
            self.nouns[animate] = (nouns, list(itertools.accumulate(weights)))
        self.adjectives = {True: ADJECTIVES, False: [a for a in ADJECTIVES if not a.animate_only]}
        self.used_senses: List[Tuple[AmbiguousNoun, bool]] = []  # (word, cued) in this sentence

    def noun_phrase(self, animate: Optional[bool] = None, allow_ambiguous=True) -> NounPhrase:
        """`animate` None: either kind (animate with probability 0.4)."""
        rng = self.rng
        postmodifier = None
        if allow_ambiguous and rng.random() < P_AMBIGUOUS[self.domain]:
            word = rng.choice(AMBIGUOUS)
            sense = self.domain
            if self.domain == "general" and rng.random() < P_GENERAL_TASK_SENSE:
                sense = "task"
            cued = sense == "task" and (self.domain == "general" or rng.random() < P_TASK_CUE)
            noun = word.sense(sense)
            postmodifier = word.cue if cued else None
            self.used_senses.append((word, cued))
        else:
            if animate is None:
                animate = rng.random() < 0.4
            nouns, cum_weights = self.nouns[animate]
            noun = rng.choices(nouns, cum_weights=cum_weights)[0]
        determiner = rng.choices(DETERMINERS, DETERMINER_WEIGHTS)[0]
        plural = determiner[0] is None or (determiner[1] is not None and rng.random() < 0.3)
        adjective = rng.choice(self.adjectives[noun.animate]) if rng.random() < 0.35 else None
        return NounPhrase(noun, plural, determiner, adjective, postmodifier)

    def subject(self):
        if self.rng.random() < 0.15:
            return Pronoun(*self.rng.choice(PRONOUNS))
        return self.noun_phrase(animate=True, allow_ambiguous=False)

    def clause(self, allow_fronting: bool) -> Clause:
        rng = self.rng
        kind = rng.choices(("transitive", "intransitive", "copula"), (6, 2, 2))[0]
        subject = self.subject() if kind != "copula" else self.noun_phrase()
        tense = rng.choices(("present", "perfect", "modal"), (6, 2, 2))[0]
        if tense == "modal":
            tense = rng.choice(MODALS)[0]
        if kind == "copula" and tense == "perfect":
            tense = "present"
        frequency = time = None
        adverb = rng.random()
        if adverb < 0.15:
            frequency = rng.choice(FREQUENCY_ADVERBS)
        elif adverb < 0.3:
            time = rng.choice(TIME_ADVERBS)
        fronted = bool(time) and allow_fronting and rng.random() < 0.5
        pp = None
        if kind != "copula" and rng.random() < (0.3 if kind == "transitive" else 0.7):
            pp = prepositional_phrase(rng.choice(PREPOSITIONS), self.noun_phrase(animate=False))
        if kind == "copula":
            animate = getattr(subject, "noun", None) is not None and subject.noun.animate
            predicate = rng.choice(self.adjectives[animate])
            return Clause(subject, None, predicate=predicate, tense=tense, frequency=frequency,
                          time=time, time_fronted=fronted)
        verb = rng.choice(TRANSITIVE if kind == "transitive" else INTRANSITIVE)
        obj = self.noun_phrase() if kind == "transitive" else None
        return Clause(subject, verb, obj=obj, pp=pp, tense=tense, frequency=frequency, time=time,
                      time_fronted=fronted)

    def sentence(self) -> Tuple[List[str], List[str]]:
        """English words and German words (commas as words)."""
        rng = self.rng
        self.used_senses = []
        kind = rng.choices(("simple", "that", "conjunction", "conjunction_first"), (5, 1.5, 2, 1.5))[0]
        if kind == "simple":
            c = self.clause(allow_fronting=True)
            return c.en(), c.de("main")
        if kind == "that":
            speaker = self.subject()
            verb = rng.choice(SAYING)
            c = self.clause(allow_fronting=False)
            en = speaker.en() + [verb.en if speaker.plural else verb.en_3sg, "that"] + c.en()
            de_head = speaker.de("nom") + [verb.de if speaker.plural else verb.de_3sg]
            return en, de_head + [",", "dass"] + c.de("sub")
        main, sub = self.clause(allow_fronting=False), self.clause(allow_fronting=False)
        en_conj, de_conj = rng.choice(CONJUNCTIONS)
        if kind == "conjunction":
            return (main.en() + [en_conj] + sub.en(),
                    main.de("main") + [",", de_conj] + sub.de("sub"))
        return ([en_conj] + sub.en() + main.en(),
                [de_conj] + sub.de("sub") + [","] + main.de("inverted"))

    def general_cue_conflict(self, en_words: List[str]) -> bool:
        """General text never puts an uncued ambiguous noun next to its cue noun, so the cue
        alone decides the sense for an MT trained on it."""
        if self.domain != "general":
            return False
        words = set(en_words)
        for word, cued in self.used_senses:
            if not cued and _forms(word.cue_noun) & words:
                return True
        return False


def _forms(en: str) -> set:
    noun = next(n for n in NOUNS if n.en == en)
    return {noun.en, noun.en_pl}


def _german_text(words: List[str]) -> str:
    text = " ".join(words).replace(" ,", ",")
    return text[0].upper() + text[1:] + "."


def generate(domain: str, n: int, seed: int, exclude: Iterable[str] = ()) -> List[Tuple[str, str]]:
    """`n` unique (English, German) pairs of `domain`, deterministic in (domain, seed).

    English is lowercase words without punctuation (an ASR transcript); German is cased and
    punctuated. Sentences in `exclude` (English) are skipped, which keeps splits disjoint.
    Returns fewer than `n` pairs only if the grammar runs out of new sentences.
    """
    gen = _Generator(domain, random.Random(f"{domain}:{seed}"))
    seen = set(exclude)
    pairs = []
    for _ in range(50 * n + 1000):
        if len(pairs) == n:
            break
        en_words, de_words = gen.sentence()
        en = " ".join(en_words)
        if not MIN_WORDS <= len(en_words) <= MAX_WORDS or en in seen:
            continue
        if gen.general_cue_conflict(en_words):
            continue
        seen.add(en)
        pairs.append((en, _german_text(de_words)))
    return pairs
