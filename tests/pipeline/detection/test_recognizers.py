"""Each kind of miss fixed in issue 4, one case per line: input -> exact entity and surface."""

from __future__ import annotations

import pytest

from tests.pipeline.detection.conftest import found

# (text, type, exact surface that must be reported)
MUST_FIND = [
    # phones: E.164, national formats, separators, brackets, glued to a word
    ("hey its Raymond, new number is +19745774875 save it", "PHONE_NUMBER", "+19745774875"),
    ("new number is (01632) 960 515 save it", "PHONE_NUMBER", "(01632) 960 515"),
    ("Call +44(0)1632 960355 now", "PHONE_NUMBER", "+44(0)1632 960355"),
    ("Tel: +33 (0)2 90 98 75 72", "PHONE_NUMBER", "+33 (0)2 90 98 75 72"),
    ("Llama al +34 983 253 311 si necesitas", "PHONE_NUMBER", "+34 983 253 311"),
    ("ruf an: 0151 23456789", "PHONE_NUMBER", "0151 23456789"),
    ("ligue 11 91234-5678", "PHONE_NUMBER", "11 91234-5678"),
    ("Contact: +61 8 4780 2079", "PHONE_NUMBER", "+61 8 4780 2079"),
    ("Contact: 07 4283 0147", "PHONE_NUMBER", "07 4283 0147"),
    ("Questions? Call (482)912-4555", "PHONE_NUMBER", "(482)912-4555"),
    ("call 333.345.4831 today", "PHONE_NUMBER", "333.345.4831"),
    ("fax 001-814-895-7087", "PHONE_NUMBER", "001-814-895-7087"),
    ("Contact: 2781072226", "PHONE_NUMBER", "2781072226"),
    ("Contact: 3947 9583", "PHONE_NUMBER", "3947 9583"),
    ("reach me on mobile212-555-0147 ok", "PHONE_NUMBER", "212-555-0147"),
    ("Tel: 0665835239", "PHONE_NUMBER", "0665835239"),
    ("mi móvil: +52 55 1234 5678", "PHONE_NUMBER", "+52 55 1234 5678"),
    ("call +91 98765 43210", "PHONE_NUMBER", "+91 98765 43210"),
    # cards, IBANs, SSNs, IPs, emails
    ("full card 6011 3601 4749 2716 exp 09/29", "CREDIT_CARD", "6011 3601 4749 2716"),
    ("full card 4163-6398-4426-6882 exp", "CREDIT_CARD", "4163-6398-4426-6882"),
    ("amex 371088525947301 ok", "CREDIT_CARD", "371088525947301"),
    ("IBAN AT88 7915 5028 9626 6241 bitte", "IBAN_CODE", "AT88 7915 5028 9626 6241"),
    ("IBAN GB82 WEST 1234 5698 7654 32 ref 1", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
    ("iban gb82west12345698765432 ref ord-1", "IBAN_CODE", "gb82west12345698765432"),
    ("my ssn is 464-72-7630 for the form", "US_SSN", "464-72-7630"),
    ("ssn 464727630", "US_SSN", "464727630"),
    ("login from 55.172.7.63 to your account", "IP_ADDRESS", "55.172.7.63"),
    ("login from e960:d0fe:bd4d:ca20:b9b0:c25b:523f:f147 now", "IP_ADDRESS",
     "e960:d0fe:bd4d:ca20:b9b0:c25b:523f:f147"),
    ("server fe80::1ff:fe23:4567:890a down", "IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    ("Envia la factura a soliznicolas@example.net, gracias", "EMAIL_ADDRESS",
     "soliznicolas@example.net"),
    # PERSON in any case, from context, in five languages
    ("maria oyelaran here", "PERSON", "maria oyelaran"),
    ("MARIA OYELARAN here", "PERSON", "MARIA OYELARAN"),
    ("Maria Oyelaran here", "PERSON", "Maria Oyelaran"),
    ("hey its abdul, new number is 555", "PERSON", "abdul"),
    ("thanks stuart houghton! your table is booked", "PERSON", "stuart houghton"),
    ("my name is john smith and i need help", "PERSON", "john smith"),
    ("Regards,\nPeter Jones", "PERSON", "Peter Jones"),
    ("Hallo Hans D., Ihr Paket kommt", "PERSON", "Hans D."),
    ("Gracias, soy Lucía Fernández", "PERSON", "Lucía Fernández"),
    ("Je m'appelle Camille Dubois", "PERSON", "Camille Dubois"),
    ("Meu nome é João Silva", "PERSON", "João Silva"),
    ("Oi Matias, seu pedido saiu", "PERSON", "Matias"),
    ("Driver Prisha is arriving in a grey Toyota", "PERSON", "Prisha"),
    # LOCATION: addresses (number + street type, units, German, type-first) and cities
    ("Delivery to 145 Thomas Knoll, Port Joshuamouth is scheduled", "LOCATION",
     "Port Joshuamouth"),
    ("Delivery to 62985 Kaitlin Rest Apt. 499, North David", "LOCATION",
     "62985 Kaitlin Rest Apt. 499"),
    ("delivery to flat 35, ryan locks, owenside is scheduled", "LOCATION", "flat 35, ryan locks"),
    ("Delivery to 15/629, Cheema Road, Silchar is scheduled", "LOCATION", "15/629, Cheema Road"),
    ("Ihr Paket wird an Karolina-Langer-Ring 6/4, Schwaz geliefert", "LOCATION",
     "Karolina-Langer-Ring 6/4"),
    ("Ihr Paket wird an Langerstr. 4/1, Graz geliefert", "LOCATION", "Langerstr. 4/1"),
    ("Ihr Paket wird an Langerstr. 4/1, Graz geliefert", "LOCATION", "Graz"),
    ("Mi dirección es Calle Mayor 5, Madrid", "LOCATION", "Calle Mayor 5"),
    ("J'habite 12 rue de la Paix, Paris", "LOCATION", "12 rue de la Paix"),
    ("seu pedido saiu para entrega em Câmara de Lobos", "LOCATION", "Câmara de Lobos"),
    ("your table for 4 at port chelseastad is booked.", "LOCATION", "port chelseastad"),
    ("my address is 425547 5 th ave tampa", "LOCATION", "425547 5 th ave"),
    # CPaaS identifiers as their own types
    ("msg SM0123456789abcdef0123456789abcdef failed", "CPAAS_SID",
     "SM0123456789abcdef0123456789abcdef"),
    ("account AC0123456789abcdef0123456789abcdef", "CPAAS_SID",
     "AC0123456789abcdef0123456789abcdef"),
    ("dial sip:+14155550123@sip.example.com now", "SIP_URI", "sip:+14155550123@sip.example.com"),
    ("IMSI 310150123456789 attached", "IMSI", "310150123456789"),
    ("SIM 89014103211118510720 active", "ICCID", "89014103211118510720"),
]


@pytest.mark.parametrize(("text", "etype", "surface"), MUST_FIND)
def test_finds(detector, text, etype, surface):
    assert (etype, surface) in found(detector, text)


# Distractors: nothing of the scored PII types may be reported (one kind per line).
SCORED = {"PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
          "IP_ADDRESS", "LOCATION"}
NOTHING = [
    "Your verification code is 451450. Do not share it with anyone.",  # OTP
    "Seu codigo de acesso: 92908100",                                 # OTP (pt)
    "Ihr Bestaetigungscode lautet 18906267",                          # OTP (de)
    "Votre code est 61129122",                                        # OTP (fr)
    "Tu codigo de verificacion es 05609513",                          # OTP (es)
    "Text STOP to 87121 to opt out",                                  # short code
    "Your order #123456789 has shipped",                              # order id
    "Ref ORD-64363363 received",                                      # order id
    "Ref INV639568299 received",                                      # order id glued
    "Track: 1ZTZE9T3EXEIGZ3H2A",                                      # tracking id
    "You paid $1,234.56 today",                                       # amount
    "Bitte ueberweisen Sie R$4993.26",                                # amount
    "Your balance is 2500.00 EUR",                                    # amount
    "Boarding gate B43, seat H1",                                     # seat / gate
    "Flight BA283 departs gate 22 at 14:05",                          # flight / time
    "sent at 2024-05-01 12:30:45",                                    # timestamp
    "your appointment is 21/11/2026",                                 # date
    "Your account id is 7304418",                                     # bare numeric id
    "Card ending 3646? thanks",                                       # last four
    "ok see you at 7",                                                # chat
    "Reply C to confirm",                                             # single letter
    "Version 1.2.3 released",                                         # version
    "Ticket 48213377 confirmed",                                      # ticket id
]


@pytest.mark.parametrize("text", NOTHING)
def test_distractors_not_reported(detector, text):
    assert [f for f in found(detector, text) if f[0] in SCORED] == []


# CPaaS ids are never phones or persons.
@pytest.mark.parametrize(("text", "etype"), [
    ("call CA0123456789abcdef0123456789abcdef", "CPAAS_SID"),
    ("from sip:+14155550123@sip.example.com", "SIP_URI"),
    ("imsi 310150123456789", "IMSI"),
])
def test_cpaas_ids_not_phone_or_person(detector, text, etype):
    kinds = {t for t, _ in found(detector, text)}
    assert etype in kinds and not kinds & {"PHONE_NUMBER", "PERSON", "CREDIT_CARD"}
