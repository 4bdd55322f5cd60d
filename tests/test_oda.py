"""Offline data authentication: public EMV vectors, round trips, and every failing check."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.emv import oda
from sim.emv.oda import OdaError, RsaPublicKey

H = bytes.fromhex

# Public vectors ------------------------------------------------------------------------------------
# From the emv-tools test suite (Dmitry Eremin-Solenikov, LGPL), as carried in
# RfidResearchGroup/proxmark3 client/emv/test/sda_test.c and dda_test.c: the public
# Visa test CA key A000000003/01 and Mastercard test CA key A000000004/05 with real
# test-card certificates. Data only; the checks below are possim's own code.

VISA_CA_01 = RsaPublicKey.from_bytes(H(
    "c696034213d7d8546984579d1d0f0ea519cff8deffc429354cf3a871a6f7183f1228da5c7470c055387100cb935a712c"
    "4e2864df5d64ba93fe7e63e71f25b1e5f5298575ebe1c63aa617706917911dc2a75ac28b251c7ef40f2365912490b939"
    "bca2124a30a28f54402c34aeca331ab67e1e79b285dd5771b5d9ff79ea630b75"), b"\x03")
SDA_ISSUER_CERT = H(
    "3c5fead4dd7bca44f93e90c44f76ede54a3288ecdc78469fcb1225c03b2c04f2c2f412281a0822df14649230989fb149"
    "4070daf8c9534a78819601486" "16ace581788120d3506ace4cee564fb27ee53341c22f0b45b31873d05de545efe33bcd2"
    "9b2185d035a806ad08c6976f3505a19999930ca8a03efa321c486061f7dcec9f")
SDA_ISSUER_REM = H("1ebca30f00ce5962a8c6e130544b82891b236c65de29317f364735dee63f6598975835d5")
SDA_SSAD = H(
    "99a558b62b674aa5e7d2a57e5ef6a6f2258e5da052d05b54e5c115ff1cecf94aa2df8f39a01d71c619eb819da52ef381"
    "e84979586aea7855ffbef40aa3a71cd3b04cfdf270aec8158a2797f24fd613b748134661135cd290e45b04a8e0ccc711"
    "ae042f159e73c89c2a7e65a4c2fd1d6106024aa27130b0ecec0238f91659de96")
SDA_STATIC = H("5f24030812315a0842765500132345995f3401019f0702ff009f0d05d040aca8009f0e0500100000009f0f05d068bcf8005c00")

MC_CA_05 = RsaPublicKey.from_bytes(H(
    "b8048abc30c90d976336543e3fd7091c8fe4800df820ed55e7e94813ed00555b573feca3d84af6131a651d66cff4284f"
    "b13b635edd0ee40176d8bf04b7fd1c7bacf9ac7327dfaa8aa72d10db3b8e70b2ddd811cb4196525ea386acc33c0d9d45"
    "75916469c4e4f53e8e1c912cc618cb22dde7c3568e90022e6bba770202e4522a2dd623d180e215bd1d1507fe3dc90ca3"
    "10d27b3efccd8f83de3052cad1e48938c68d095aac91b5f37e28bb49ec7ed597"), b"\x03")
DDA_ISSUER_CERT = H(
    "1714284f763b8586ee6d319951f7e63fa25076e50dc9d3200ba998d3a052adba9ab69ac6ad6add3ce09f0278f4074ec4"
    "ee9b1d2268a3e953575e454e50cd860bf424c51c597712d2aa057089dd8673e51b1e1d718803489207" "7ac18a6ae23488"
    "bea9df3b1a83f2c0800cd7c5cdf2fde0496f7bc39fb4bf363299bfa637b2ec33c507e36821eec2075f0e420d38a1c9f3"
    "127261ba316c987674fadb20ea7feb75ee455d12146ea6f02e8b01ec2fa7a115")
DDA_ISSUER_REM = H("6e63b7bc70abdd09341b34c03286ba9bd83ba7936c5b7798fb22c5e53ff240a26dbd6415")
DDA_ICC_CERT = H(
    "a42fbeb156b98dcb0554da062adca5309a91f04fa2c7bd7102a8d73f16a3cfade8aadf4f3fe2a2125ccdd77c6b9f78b5"
    "b4371ce0805725b0f9c027af147d91e1ffdb201e9c170ce777053a172ad526dcafd33895e1a947305c5b167f2e7c6f99"
    "1581a652ee473154760c2ed774214e50dfecdd4cf294c974b89ebca25b5ab3c0beb50dfaf782afde1433d90ca2a89d65"
    "1e75d67ebc7c3e36f5a165ee6132612939c1ecd399e46074b996d93a88e01e0a")
DDA_SDAD = H(
    "3d87f31056102d2512cfde30900627c1263a76d1daa821f50831e606c54544c258131eaebe874dcb1a28cf82d3ff9111"
    "8260bc91113711d3b289fa41be69c7a7b5c783e6f8f97fce13f08b13fa44183e3718cebf0c41473d2b0ff4de44b6a02d"
    "75adb6d4962393ffdf4e69026cdf38ff")
DDA_STATIC = H(
    "5f25031405015f24031506305a0852858812543456535f3401018e0c00000000000000001e031f039f0702ff009f0d05"
    "bc50bc00009f0e0500000000009f0f05bc70bc98009f4a01825f280206438c219f02069f03069f1a0295055f2a029a03"
    "9c019f37049f35019f45029f4c089f34038d0c910a8a0295059f37049f4c083900")
DDA_PAN = "5285881254345653"

# A PBOC test issuer certificate published with its CA key and recovered data
# (https://www.codetd.com/article/1523575): checks raw recovery only (no remainder given).
PBOC_CA = RsaPublicKey.from_bytes(H(
    "AE8DE479F30046B083AD42DD7E9300BE9EF67E891AE79FB96599C46A3CA5516BEA1598E3FB3AEDE7CE5EA8E47DD98774"
    "D2D2373B3CBACC7BBEC807CF7D9110B7AB1946D4C762244A5E006DCDB3F4E6BB99BBA4A0BE9A892203B8226352F7B9F2"
    "60C32B37EE255D96E68E12D8F90C70842009ABB07E708110A70292E2EFCBB4D9"), H("010001"))
PBOC_CERT = H(
    "2B0CB3F653A15F5DD6A30D09F47E9BB36747B52C7B49499416FF12E5707FDFDBCF8B8F05703B86BDC0B322A8943F801E"
    "EED8FAD8A96B533D742DBF36410548C09EBE9C317C98542BF694C4143A3813F3ABDF5C3AD23BA26B0B23A4D52455E11F"
    "6F0D1EE0435C69DD4B41E38C9D855A03E194C5321152879375849401BB415166")
PBOC_RECOVERED = H(
    "6A02622800FF123000000101018001B4AB1DC9B46B8745C26703A7CEFF49522922F18DABFBBD0AA3492FA1A893A78C17"
    "66226561F7895CA938FFDF53838E5863E46D11D60B98104125174D7A0DF09FAF7C255DDC5A51494D60449B8A7524EE33"
    "955363C7CB26CD679A05EB500DC25210B5F2ADDF14429F2A9F3CB781A5717EBC")


def test_public_sda_vector():
    issuer = oda.recover_issuer_key(VISA_CA_01, SDA_ISSUER_CERT, SDA_ISSUER_REM, b"\x03", "4276550013234599")
    assert (issuer.issuer_identifier, issuer.expiry, issuer.key.size) == ("427655", "1209", 128)
    assert oda.verify_sda(issuer, SDA_SSAD, SDA_STATIC) == H("3132")
    with pytest.raises(OdaError, match="expired"):
        oda.recover_issuer_key(VISA_CA_01, SDA_ISSUER_CERT, SDA_ISSUER_REM, b"\x03", "4276550013234599",
                               today=date(2026, 1, 1))


def test_public_dda_vector():
    issuer = oda.recover_issuer_key(MC_CA_05, DDA_ISSUER_CERT, DDA_ISSUER_REM, b"\x03", DDA_PAN)
    assert issuer.issuer_identifier == "528588"
    icc = oda.recover_icc_key(issuer, DDA_ICC_CERT, None, b"\x03", DDA_PAN, DDA_STATIC)
    assert (icc.pan, icc.expiry, icc.key.size) == (DDA_PAN, "0615", 112)
    assert oda.verify_dda(icc, DDA_SDAD, H("00000000")) == H("7A33FB8C9546E1E7")
    with pytest.raises(OdaError) as caught:
        oda.verify_dda(icc, DDA_SDAD, H("00000001"))
    assert caught.value.step == "hash"
    with pytest.raises(OdaError) as caught:
        oda.recover_icc_key(issuer, DDA_ICC_CERT, None, b"\x03", DDA_PAN, DDA_STATIC[:-1])
    assert caught.value.step == "hash"


def test_public_pboc_recovery():
    assert oda.recover(PBOC_CERT, PBOC_CA) == PBOC_RECOVERED
    with pytest.raises(OdaError) as caught:  # the remainder is not published: the hash cannot match
        oda.recover_issuer_key(PBOC_CA, PBOC_CERT, bytes(36), b"\x03", "6228000000000000")
    assert caught.value.step == "hash"


# The possim TEST CA ----------------------------------------------------------------------------------------


def test_ca_file_is_reproducible_and_consistent():
    keys = oda.ca_public_keys()
    assert {(k.rid, k.index) for k in keys} == {("A000000003", 0xF1), ("A000000004", 0xF1)}
    raw = oda._ca_file()["keys"]
    for entry, key in zip(raw, keys):
        assert "TEST ONLY" in entry["name"] and "TEST ONLY" in entry["label"]
        derived = oda.derive_rsa_key(entry["label"], 1408, key.key.exponent)
        assert derived.public == key.key
        assert derived == oda.ca_private_key(key.rid, key.index)
        assert key.checksum.hex().upper() == entry["checksum"]
        assert key.checksum == hashlib.sha1(H(key.rid) + b"\xF1" + key.key.modulus_bytes + key.key.exponent_bytes).digest()


def test_unknown_ca_key():
    with pytest.raises(KeyError, match="A000000003/F1"):
        oda.ca_public_key("A000000003", 0x92)
    assert oda.ca_public_key("a000000004", 0xF1).key.exponent == 65537


def test_derive_rsa_key_is_deterministic_and_checked():
    one = oda.derive_rsa_key("t", 768, 3)
    assert one == oda.derive_rsa_key.__wrapped__("t", 768, 3)
    assert one.modulus.bit_length() == 768
    assert one.public.modulus_bytes[0] > 0x6A  # every 6A... block is below the modulus
    assert oda.derive_rsa_key("u", 768, 3) != one
    message = b"\x6A" + bytes(95)
    assert pow(int.from_bytes(one.sign(message), "big"), 3, one.modulus) == int.from_bytes(message, "big")
    with pytest.raises(ValueError, match="exponent"):
        oda.derive_rsa_key("t", 768, 5)
    with pytest.raises(ValueError, match="multiple of 16"):
        oda.derive_rsa_key("t", 770, 3)
    assert "private_exponent" not in repr(one)


# Round trips with possim's own certificates ---------------------------------------------------------------

PAN = "4761739001010010"


@pytest.fixture(scope="module")
def chain():
    ca = oda.ca_private_key("A000000003", 0xF1)
    issuer = oda.derive_rsa_key("test issuer long", 1152, 65537)  # 144 > 176-36: 4-byte remainder
    icc = oda.derive_rsa_key("test icc long", 1024, 3)  # 128 > 144-42: 26-byte remainder
    static = b"static data" * 5
    issuer_cert, issuer_rem = oda.make_issuer_certificate(ca, issuer.public, "476173", "1230", b"\x00\x00\x07")
    icc_cert, icc_rem = oda.make_icc_certificate(issuer, icc.public, PAN, "1228", b"\x00\x01\x00", static)
    return ca, issuer, icc, static, issuer_cert, issuer_rem, icc_cert, icc_rem


def test_round_trip_with_remainders(chain):
    ca, issuer, icc, static, issuer_cert, issuer_rem, icc_cert, icc_rem = chain
    assert (len(issuer_cert), len(issuer_rem), len(icc_cert), len(icc_rem)) == (176, 4, 144, 26)
    today = date(2026, 3, 15)
    recovered = oda.recover_issuer_key(ca.public, issuer_cert, issuer_rem, H("010001"), PAN, today=today)
    assert recovered.key == issuer.public and recovered.serial == b"\x00\x00\x07"
    icc_key = oda.recover_icc_key(recovered, icc_cert, icc_rem, b"\x03", PAN, static, today=today)
    assert icc_key.key == icc.public and icc_key.expiry == "1228"
    ssad = oda.sign_static_data(issuer, static, b"\xDA\xC1")
    assert oda.verify_sda(recovered, ssad, static) == b"\xDA\xC1"
    sdad = oda.sign_dynamic_data(icc, b"\x04\x01\x02\x03\x04", b"UNPN")
    assert oda.verify_dda(icc_key, sdad, b"UNPN") == b"\x01\x02\x03\x04"


def test_round_trip_with_padding_and_no_remainder():
    ca = oda.ca_private_key("A000000004", 0xF1)
    issuer = oda.derive_rsa_key("test issuer short", 1024, 3)
    cert, rem = oda.make_issuer_certificate(ca, issuer.public, "541333", "1230", b"\x00\x00\x01")
    assert rem == b"" and oda.recover(cert, ca.public)[15 + 128:15 + 140] == b"\xBB" * 12
    assert oda.recover_issuer_key(ca.public, cert, None, b"\x03", "5413330089010012").key == issuer.public
    icc = oda.derive_rsa_key("test icc short", 512, 3)
    icc_cert, icc_rem = oda.make_icc_certificate(issuer, icc.public, "5413330089010012", "1228", b"\x00\x00\x02", b"")
    assert icc_rem == b""
    assert oda.recover_icc_key(issuer.public, icc_cert, b"", b"\x03", "5413330089010012", b"").key == icc.public


@pytest.mark.parametrize(
    ("mutate", "step"),
    [
        (lambda c: c[:-1], "length"),
        (lambda c: c[:-1] + bytes([c[-1] ^ 0x01]), "header"),
        (lambda c: c[:50] + bytes([c[50] ^ 0x40]) + c[51:], "header"),
        (lambda c: bytes(len(c)), "header"),
    ],
)
def test_tampered_issuer_certificate_fails(chain, mutate, step):
    ca, _, _, _, issuer_cert, issuer_rem, _, _ = chain
    with pytest.raises(OdaError) as caught:
        oda.recover_issuer_key(ca.public, mutate(issuer_cert), issuer_rem, H("010001"), PAN)
    assert caught.value.step == step


@pytest.mark.parametrize(
    ("kwargs", "step"),
    [
        ({"remainder": b"\x00\x00\x00\x00"}, "hash"),
        ({"remainder": b""}, "remainder"),
        ({"exponent": b"\x03"}, "hash"),
        ({"exponent": b"\x05"}, "exponent"),
        ({"pan": "5413330089010012"}, "identifier"),
        ({"today": date(2031, 1, 1)}, "expiry"),
    ],
)
def test_issuer_certificate_checks(chain, kwargs, step):
    ca, _, _, _, issuer_cert, issuer_rem, _, _ = chain
    args = {"remainder": issuer_rem, "exponent": H("010001"), "pan": PAN, **kwargs}
    today = args.pop("today", None)
    with pytest.raises(OdaError) as caught:
        oda.recover_issuer_key(ca.public, issuer_cert, args["remainder"], args["exponent"], args["pan"], today=today)
    assert caught.value.step == step


@pytest.mark.parametrize(
    ("kwargs", "step"),
    [
        ({"static": b"static data" * 4}, "hash"),
        ({"pan": "4761739001010028"}, "pan"),
        ({"remainder": b""}, "remainder"),
        ({"today": date(2029, 1, 1)}, "expiry"),
    ],
)
def test_icc_certificate_checks(chain, kwargs, step):
    _, issuer, _, static, _, _, icc_cert, icc_rem = chain
    args = {"remainder": icc_rem, "pan": PAN, "static": static, **kwargs}
    with pytest.raises(OdaError) as caught:
        oda.recover_icc_key(issuer.public, icc_cert, args["remainder"], b"\x03", args["pan"], args["static"],
                            today=args.get("today"))
    assert caught.value.step == step


def test_signatures_of_the_wrong_kind_fail_the_format_check(chain):
    ca, issuer, icc, static, issuer_cert, _, icc_cert, _ = chain
    ssad = oda.sign_static_data(issuer, static, b"\x00\x01")
    with pytest.raises(OdaError) as caught:  # an SSAD is not an ICC certificate
        oda.recover_icc_key(issuer.public, ssad, None, b"\x03", PAN, static)
    assert caught.value.step == "format"
    with pytest.raises(OdaError) as caught:
        oda.verify_sda(issuer.public, icc_cert, static)
    assert caught.value.step == "format"
    with pytest.raises(OdaError) as caught:
        oda.verify_sda(issuer.public, ssad, static + b"x")
    assert caught.value.step == "hash"


def test_signing_refuses_impossible_sizes(chain):
    ca, issuer, icc, *_ = chain
    with pytest.raises(OdaError, match="longer than the CA key"):
        oda.make_issuer_certificate(issuer, ca.public, "476173", "1230", b"\x00\x00\x01")
    with pytest.raises(OdaError, match="3 to 8"):
        oda.make_issuer_certificate(ca, issuer.public, "47", "1230", b"\x00\x00\x01")
    with pytest.raises(OdaError, match="MMYY"):
        oda.make_issuer_certificate(ca, issuer.public, "476173", "1330", b"\x00\x00\x01")
    with pytest.raises(OdaError, match="exceeds"):
        oda.sign_dynamic_data(icc, bytes(200), b"")


@settings(max_examples=25, deadline=None)
@given(flip=st.integers(0, 175 * 8 - 1))
def test_any_single_bit_flip_in_a_certificate_is_caught(chain, flip):
    ca, _, _, _, issuer_cert, issuer_rem, _, _ = chain
    tampered = bytearray(issuer_cert)
    tampered[flip // 8] ^= 1 << (flip % 8)
    with pytest.raises(OdaError):
        oda.recover_issuer_key(ca.public, bytes(tampered), issuer_rem, H("010001"), PAN)


# Static data to be authenticated -------------------------------------------------------------------------


def test_static_data_rules():
    short = H("7003" "5A0112")
    long = H("7081" "03" "5A0112")
    assert oda.static_data_to_authenticate([(2, short)]) == H("5A0112")
    assert oda.static_data_to_authenticate([(2, long)]) == H("5A0112")
    assert oda.static_data_to_authenticate([(11, short)]) == short
    assert oda.static_data_to_authenticate([(2, short)], aip=H("1800"), tag_list=H("82")) == H("5A01121800")
    with pytest.raises(OdaError, match="only 82"):
        oda.static_data_to_authenticate([(2, short)], aip=H("1800"), tag_list=H("9F36"))
    with pytest.raises(OdaError, match="70"):
        oda.static_data_to_authenticate([(2, H("7703010203"))])
    with pytest.raises(OdaError, match="length does not match"):
        oda.static_data_to_authenticate([(2, H("7004010203"))])
