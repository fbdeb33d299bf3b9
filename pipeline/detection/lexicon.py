"""Language-specific word lists used by the context rules (hand-written, not from Faker).

Everything here is *context*: words that announce or end a name, a phone number or a
place, and words that mark a number as a code, an order id or an amount. There is no
list of first names, surnames, cities or street names (PITFALLS.md: the evaluation data
is generated with Faker, whose word lists must not be used as gazetteers). Stop words
come from spaCy's per-language lists, loaded lazily.
"""

from __future__ import annotations

import functools
import importlib

LANGUAGES = ("en", "es", "de", "fr", "pt")

#: Words right before a name: greetings, thanks, self-introductions, titles and roles.
PERSON_BEFORE: dict[str, tuple[str, ...]] = {
    "en": (
        "hi", "hello", "hey", "hiya", "dear", "yo", "morning", "evening", "thanks", "thank you",
        "thx", "ty", "cheers", "this is", "it's", "its", "it is", "i am", "i'm", "im",
        "my name is", "myname is", "my name", "myname", "name is", "name:", "name",
        "the name is", "names", "call me", "named", "called", "regards", "best", "love", "sincerely",
        "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "dr", "dr.", "prof", "prof.", "sir", "madam",
        "driver", "courier", "agent", "rep", "technician", "nurse", "doctor", "contact person",
        "attn", "attn:", "attention", "ask for", "speak to", "talk to", "from", "signed",
        "reminder:", "customer", "patient", "passenger", "guest", "welcome", "congrats",
        "congratulations", "happy birthday", "bye", "goodbye", "see you", "meet", "with",
    ),
    "es": (
        "hola", "buenos dias", "buenos días", "buenas", "buenas tardes", "querido", "querida",
        "estimado", "estimada", "gracias", "muchas gracias", "soy", "me llamo", "mi nombre es",
        "habla", "aquí", "aqui", "sr", "sr.", "sra", "sra.", "srta", "srta.", "don", "doña",
        "saludos", "atentamente", "conductor", "repartidor", "cliente", "paciente", "dr", "dra",
        "dra.", "dr.", "de parte de", "con", "bienvenido", "bienvenida",
    ),
    "de": (
        "hallo", "hi", "hey", "guten tag", "guten morgen", "moin", "servus", "liebe", "lieber",
        "sehr geehrte", "sehr geehrter", "danke", "vielen dank", "ich bin", "mein name ist",
        "hier ist", "hier spricht", "ich heiße", "ich heisse", "herr", "frau", "grüße", "gruß",
        "grüsse", "gruss", "lg", "mfg", "fahrer", "fahrerin", "kunde", "kundin", "dr", "dr.",
        "willkommen", "von",
    ),
    "fr": (
        "bonjour", "bonsoir", "salut", "coucou", "cher", "chère", "chere", "merci", "je suis",
        "je m'appelle", "mon nom est", "c'est", "ici", "monsieur", "madame", "mademoiselle",
        "m.", "mme", "mme.", "mlle", "cordialement", "amitiés", "bisous", "chauffeur", "livreur",
        "client", "cliente", "dr", "dr.", "bienvenue", "de la part de", "avec",
    ),
    "pt": (
        "oi", "olá", "ola", "bom dia", "boa tarde", "boa noite", "prezado", "prezada", "caro",
        "cara", "querido", "querida", "obrigado", "obrigada", "valeu", "sou", "eu sou",
        "meu nome é", "meu nome e", "me chamo", "aqui é", "aqui e", "sr", "sr.", "sra", "sra.",
        "senhor", "senhora", "dona", "abraços", "abraço", "atenciosamente", "beijos",
        "motorista", "entregador", "cliente", "paciente", "dr", "dra", "bem-vindo", "bem-vinda",
        "com",
    ),
}

#: Words right after a name that mark it as the speaker (``maria here``).
PERSON_AFTER: dict[str, tuple[str, ...]] = {
    "en": ("here", "speaking", "calling", "just paid", "has paid", "paid", "says", "said",
           "wrote", "is arriving", "will arrive", "is on the way", "is on his way",
           "is on her way", "has a", "has an", "sent", "booked", "confirmed", "called",
           "texted", "ordered", "requested"),
    "es": ("aquí", "aqui", "al habla", "pagó", "pago", "llega", "está llegando"),
    "de": ("hier", "am apparat", "hat bezahlt", "kommt", "ist unterwegs"),
    "fr": ("ici", "à l'appareil", "a payé", "arrive", "est en route"),
    "pt": ("aqui", "falando", "pagou", "chegando", "está chegando"),
}

#: Words that announce a phone number (Presidio context enhancement, per language).
PHONE_CONTEXT: dict[str, tuple[str, ...]] = {
    "en": ("phone", "number", "call", "tel", "telephone", "mobile", "mob", "cell", "fax",
           "contact", "whatsapp", "text", "sms", "ring", "dial", "reach", "ph", "no", "landline",
           "hotline", "line", "direct"),
    "es": ("teléfono", "telefono", "tel", "llama", "llamar", "llámame", "móvil", "movil",
           "celular", "número", "numero", "fax", "contacto", "whatsapp"),
    "de": ("telefon", "tel", "ruf", "rufen", "anrufen", "handy", "mobil", "nummer",
           "rufnummer", "fax", "kontakt", "whatsapp"),
    "fr": ("téléphone", "telephone", "tél", "tel", "appelez", "appeler", "appelle", "portable",
           "mobile", "numéro", "numero", "fax", "contact", "whatsapp"),
    "pt": ("telefone", "tel", "ligue", "ligar", "liga", "celular", "telemóvel", "telemovel",
           "número", "numero", "fax", "contato", "contacto", "whatsapp", "zap"),
}

#: Words that make a nearby number a code, an id, an amount or a date rather than PII.
NUMBER_NEGATIVE_CONTEXT: dict[str, tuple[str, ...]] = {
    "en": ("code", "otp", "pin", "passcode", "password", "verification", "verify", "token",
           "order", "ref", "reference", "invoice", "inv", "tracking", "track", "booking",
           "confirmation", "ticket", "id", "account", "acct", "receipt", "transaction", "txn",
           "seat", "gate", "flight", "room", "table", "ending", "last", "amount", "total",
           "balance", "paid", "pay", "price", "cost", "due", "usd", "eur", "gbp", "case",
           "claim", "policy", "member", "membership", "customer", "serial", "model", "sku",
           "voucher", "coupon", "promo", "shortcode", "short code", "ssn", "iban", "card"),
    "es": ("código", "codigo", "clave", "contraseña", "pedido", "orden", "referencia", "ref",
           "factura", "seguimiento", "reserva", "billete", "asiento", "puerta", "vuelo",
           "importe", "total", "saldo", "cuenta", "terminada", "tarjeta", "cliente"),
    "de": ("code", "bestätigungscode", "bestaetigungscode", "pin", "passwort", "bestellung",
           "bestellnummer", "referenz", "rechnung", "sendung", "sendungsnummer", "buchung",
           "ticket", "sitz", "sitzplatz", "gate", "flug", "betrag", "summe", "konto", "karte",
           "kundennummer"),
    "fr": ("code", "mot de passe", "commande", "référence", "reference", "réf", "facture",
           "suivi", "colis", "réservation", "reservation", "billet", "siège", "porte", "vol",
           "montant", "total", "solde", "compte", "carte", "client"),
    "pt": ("código", "codigo", "senha", "pedido", "encomenda", "referência", "referencia",
           "ref", "fatura", "rastreio", "rastreamento", "reserva", "bilhete", "assento",
           "portão", "voo", "valor", "total", "saldo", "conta", "cartão", "cartao", "cliente",
           "acesso"),
}

#: Prepositions after which a capitalised name is a place ("em Amadora", "at Port X").
PLACE_BEFORE: dict[str, tuple[str, ...]] = {
    "en": ("in", "at", "near", "from", "to", "around", "outside", "downtown", "city of",
           "town of", "located in", "based in", "live in", "lives in", "moved to"),
    "es": ("en", "de", "desde", "hacia", "cerca de", "a"),
    "de": ("in", "nach", "aus", "bei", "an", "von"),
    "fr": ("à", "a", "en", "de", "depuis", "vers", "près de", "pres de"),
    "pt": ("em", "de", "para", "no", "na", "perto de", "até", "ate"),
}

#: Lower-case words that may join the words of a place or street name.
NAME_CONNECTORS = frozenset((
    "de", "da", "do", "das", "dos", "del", "la", "las", "los", "le", "les", "di", "du", "des",
    "e", "y", "am", "an", "der", "im", "upon", "on", "the", "sur", "sous", "en", "of", "von",
    "van", "bin", "al", "el",
))

#: General toponymic prefixes (English, Romance): a capitalised word after them is a place.
PLACE_PREFIXES = frozenset((
    "north", "south", "east", "west", "new", "old", "upper", "lower", "great", "little",
    "port", "fort", "mount", "mt", "lake", "saint", "st", "san", "santa", "santo", "são",
    "sao", "bad", "sankt", "isla", "ilha", "porto", "puerto", "villa", "vila", "ciudad",
    "cidade", "la", "le", "los", "las", "el", "bay", "cape", "point", "glen",
))

#: Street types: after the street name (English, French-style ``12 Main Street``).
STREET_TYPES_AFTER = frozenset((
    "street", "st", "road", "rd", "avenue", "ave", "av", "lane", "ln", "drive", "dr", "court",
    "ct", "boulevard", "blvd", "way", "place", "pl", "terrace", "ter", "crescent", "cres",
    "close", "square", "sq", "parkway", "pkwy", "highway", "hwy", "circle", "cir", "trail",
    "trl", "path", "marg", "nagar", "chowk", "gali", "row", "walk", "mews", "grove", "gardens",
    "park", "hill", "hills", "view", "rise", "green", "gate", "wharf", "quay", "alley",
    "loop", "pike", "plaza", "point", "ridge", "run", "track", "turnpike", "estate",
    "estates", "heights", "junction", "crossing", "common", "commons", "meadow", "meadows",
    "manor", "village", "vale", "valley", "brook", "creek", "ford", "fork", "forks", "knoll",
    "landing", "pass", "passage", "pines", "port", "ranch", "shore", "shores", "spring",
    "springs", "station", "summit", "trace", "union", "ville", "vista", "well", "wells",
    "cross", "expressway", "expy", "freeway", "fwy", "main", "center", "centre", "corner", "corners", "extension", "extensions", "forge", "forges",
    "harbor", "harbour", "lock", "locks", "mission", "mill", "mills", "oval", "pine", "rest",
    "route", "spur", "tunnel", "turn", "underpass", "bypass", "causeway", "cove", "dale",
    "end", "field", "fields", "flat", "flats", "island", "isle", "key", "lodge", "mall",
    "mount", "mountain", "orchard", "parade", "pier", "plains", "prairie", "river", "road",
    "square", "stream", "via", "wood", "woods", "yard",
))

#: Street types written first (``Calle Mayor 5``, ``rue de la Paix``, ``Rua das Flores``).
STREET_TYPES_BEFORE = frozenset((
    "calle", "c/", "avenida", "avda", "avda.", "av.", "paseo", "plaza", "carrera", "camino",
    "ronda", "travesía", "travesia", "rua", "r.", "travessa", "largo", "praça", "praca",
    "alameda", "estrada", "rodovia", "rue", "avenue", "boulevard", "bd", "bd.", "place",
    "chemin", "allée", "allee", "impasse", "quai", "route", "cours", "via", "viale", "piazza",
    "corso", "strada",
))

#: German street-name endings (``Reisinggasse 30``, ``Hauptstr. 4``).
GERMAN_STREET_SUFFIXES = (
    "straße", "strasse", "str.", "str", "gasse", "weg", "platz", "ring", "allee", "damm",
    "ufer", "markt", "steig", "pfad", "chaussee", "zeile", "graben", "hof", "kai", "gürtel",
    "promenade", "berg", "feld", "brücke", "tor", "wall", "stieg", "anger",
)

#: Apartment / unit words (``Apt. 4``, ``Flat 71``, ``Suite 200``).
UNIT_WORDS = frozenset((
    "apt", "apt.", "apartment", "flat", "suite", "ste", "ste.", "unit", "studio", "floor",
    "fl", "room", "bldg", "building", "piso", "puerta", "depto", "dpto", "andar", "apto",
    "apto.", "sala", "bloco", "wohnung", "whg", "etage", "stock", "appt", "appartement",
    "étage", "bât", "bâtiment", "#",
))

#: Months and weekdays (en, es, de, fr, pt) plus relative days.
CALENDAR = frozenset((
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "today", "tomorrow", "tonight", "yesterday",
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
    "octubre", "noviembre", "diciembre", "januar", "februar", "märz", "mai", "juni", "juli",
    "oktober", "dezember", "janvier", "février", "mars", "avril", "juin", "juillet", "août",
    "septembre", "octobre", "novembre", "décembre", "janeiro", "fevereiro", "março", "maio",
    "junho", "julho", "setembro", "outubro", "novembro", "dezembro", "lunes", "martes",
    "miércoles", "jueves", "viernes", "sábado", "domingo", "montag", "dienstag", "mittwoch",
    "donnerstag", "freitag", "samstag", "sonntag", "lundi", "mardi", "mercredi", "jeudi",
    "vendredi", "samedi", "dimanche", "segunda", "terça", "quarta", "quinta", "sexta",
    "hoy", "heute", "hoje", "mañana", "morgen", "demain", "amanhã",
))

#: Words that are never part of a name (in any case): calendar words, chat words.
NOT_NAME = CALENDAR | frozenset((
    "there",
    "all", "everyone", "everybody", "guys", "team", "folks", "again", "so", "much", "lot",
    "mate", "dude", "bro", "babe", "baby", "honey", "dear", "sweetie", "love", "sir", "madam",
    "ok", "okay", "yes", "no", "yeah", "yep", "nope", "please", "pls", "plz", "thanks",
    "thank", "thx", "hi", "hello", "hey", "lol", "omg", "btw", "asap", "fyi", "u", "ur", "r",
    "ya", "new", "number", "phone", "code", "order", "driver", "reminder", "alert", "your",
    "my", "our", "their", "his", "her", "it", "this", "that", "here", "now", "just", "not",
    "reply", "stop", "call", "text", "msg", "message", "free", "win", "txt", "good", "great",
    "nice", "cool", "sorry", "welcome", "morning", "evening", "night", "afternoon", "day",
    "week", "month", "year", "time", "home", "work", "back", "soon", "later", "done",
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
    "octubre", "noviembre", "diciembre", "januar", "februar", "märz", "mai", "juni", "juli",
    "oktober", "dezember", "janvier", "février", "mars", "avril", "juin", "juillet", "août",
    "septembre", "octobre", "novembre", "décembre", "janeiro", "fevereiro", "março", "maio",
    "junho", "julho", "setembro", "outubro", "novembro", "dezembro", "lunes", "martes",
    "miércoles", "jueves", "viernes", "sábado", "domingo", "montag", "dienstag", "mittwoch",
    "donnerstag", "freitag", "samstag", "sonntag", "lundi", "mardi", "mercredi", "jeudi",
    "vendredi", "samedi", "dimanche", "segunda", "terça", "quarta", "quinta", "sexta",
    "ihr", "ihre", "votre", "vos", "tu", "seu", "sua", "su", "sus", "usted", "vous",
    "amigo", "amiga", "tudo", "todos", "todas", "tout", "alle", "allemaal", "equipo",
    "cliente", "kunde", "client", "gente", "pessoal", "chicos", "leute", "hoy", "heute",
    "hoje", "aujourd'hui", "mañana", "morgen", "demain", "amanhã", "pedido", "paket",
    "commande", "código", "codigo", "votre", "tel", "iban", "ssn", "card", "email", "mail",
))


@functools.cache
def stop_words(language: str) -> frozenset[str]:
    """spaCy's stop words for ``language`` (empty when spaCy has no list for it)."""
    try:
        module = importlib.import_module(f"spacy.lang.{language}.stop_words")
    except ImportError:
        return frozenset()
    return frozenset(w.lower() for w in module.STOP_WORDS)


@functools.cache
def non_name_words(language: str) -> frozenset[str]:
    """Words that end a name in ``language``: stop words (its own and English) + NOT_NAME."""
    words = set(stop_words(language)) | set(stop_words("en")) | NOT_NAME
    for table in (PHONE_CONTEXT, NUMBER_NEGATIVE_CONTEXT):
        for lang in (language, "en"):
            words.update(w for w in table.get(lang, ()) if " " not in w)
    return frozenset(words)
