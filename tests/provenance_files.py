"""Image files with provenance metadata, made by the tests: AUTOMATIC1111 and ComfyUI PNGs, EXIF
and XMP JPEGs, and JPEGs signed with c2pa-python's Builder under a certificate chain made here
with `cryptography` (C2PA's certificate profile: Subject and Authority Key Identifiers, a leaf
with digitalSignature and emailProtection)."""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image, PngImagePlugin

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
A1111 = (
    "a lighthouse at dusk, oil painting\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ "
    "2M Karras, CFG scale: 7, Seed: 1234, Size: 256x256, Model hash: cc6cb27103, "
    "Model: v1-5-pruned-emaonly, Version: v1.7.0"
)
COMFY = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}},
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
}
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    f'Iptc4xmpExt:DigitalSourceType="{DST}"/></rdf:RDF></x:xmpmeta>'
).encode()


def certificate_chain(out: Path, name: str = "Test Generator") -> dict[str, Path]:
    """A root CA and a signing leaf: {"chain": leaf+root PEM, "key": leaf key, "root": root}."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def dn(cn: str):
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "originprobe tests"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            ]
        )

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, pub, key, ca: bool):
        usage = dict(
            digital_signature=not ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=1 if ca else None), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
            .add_extension(x509.KeyUsage(**usage), True)
        )
        if not ca:
            b = b.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False
            )
        return b.sign(key, hashes.SHA256())

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = cert(dn(f"{name} Root CA"), dn(f"{name} Root CA"), root_key.public_key(), root_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(dn(f"{name} Signer"), root.subject, leaf_key.public_key(), root_key, False)
    pem = serialization.Encoding.PEM
    out.mkdir(parents=True, exist_ok=True)
    paths = {"chain": out / "chain.pem", "key": out / "key.pem", "root": out / "root.pem"}
    paths["chain"].write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    paths["key"].write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["root"].write_bytes(root.public_bytes(pem))
    return paths


def sign_jpeg(jpeg: bytes, chain: dict[str, Path], agent: str = "DALL-E 3") -> bytes:
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "originprobe-test-signer", "version": "1.0"}],
        "title": "generated.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DST,
                            "softwareAgent": {"name": agent},
                        }
                    ]
                },
            }
        ],
    }
    info = c2pa.C2paSignerInfo(
        b"es256", chain["chain"].read_bytes(), chain["key"].read_bytes(), None
    )
    signer = c2pa.Signer.from_info(info)
    out = io.BytesIO()
    c2pa.Builder(json.dumps(manifest)).sign(signer, "image/jpeg", io.BytesIO(jpeg), out)
    return out.getvalue()


def change_pixels(jpeg: bytes) -> bytes:
    """The same file with bytes of its entropy-coded image data changed (after signing)."""
    b = bytearray(jpeg)
    for off in (300, 200, 150):
        b[-off] ^= 0x5A
    return bytes(b)


def _app11_payload_start(jpeg: bytes) -> int:
    """Offset of the first APP11 (JUMBF) segment's marker."""
    i = 2
    while i < len(jpeg) - 4:
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if marker == 0xEB:
            return i
        i += 2 + length
    raise ValueError("no APP11 segment")


def manifest_pointing_outside(jpeg: bytes, chain: dict[str, Path]) -> bytes:
    """A file whose C2PA manifest is not embedded: its XMP points to a URL (on loopback; a
    reader must not fetch it)."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "originprobe-test-signer", "version": "1.0"}],
        "title": "remote.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": DST}]},
            }
        ],
    }
    info = c2pa.C2paSignerInfo(
        b"es256", chain["chain"].read_bytes(), chain["key"].read_bytes(), None
    )
    builder = c2pa.Builder(json.dumps(manifest))
    builder.set_no_embed()
    builder.set_remote_url("http://127.0.0.1:9/manifest.c2pa")
    out = io.BytesIO()
    builder.sign(c2pa.Signer.from_info(info), "image/jpeg", io.BytesIO(jpeg), out)
    return out.getvalue()


def truncated_jumbf(signed: bytes) -> bytes:
    """The APP11 segment cut to 64 bytes: the JUMBF boxes inside it end early."""
    i = _app11_payload_start(signed)
    length = struct.unpack(">H", signed[i + 2 : i + 4])[0]
    seg = bytearray(signed[i : i + 2 + 64])
    seg[2:4] = struct.pack(">H", 64)
    return signed[:i] + bytes(seg) + signed[i + 2 + length :]


def png_with_text(src: Path, key: str, value: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    buf = io.BytesIO()
    with Image.open(src) as im:
        im.convert("RGB").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def png_with_huge_text(src: Path, megabytes: int = 50) -> bytes:
    """A PNG with a `megabytes` MB tEXt chunk before its image data."""
    buf = io.BytesIO()
    with Image.open(src) as im:
        im.convert("RGB").save(buf, "PNG")
    png = buf.getvalue()
    data = b"parameters\x00" + b"x" * (megabytes << 20)
    chunk = (
        struct.pack(">I", len(data))
        + b"tEXt"
        + data
        + struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    )
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and IHDR


def jpeg_of(src: Path, **save) -> bytes:
    buf = io.BytesIO()
    with Image.open(src) as im:
        im.convert("RGB").save(buf, "JPEG", quality=92, **save)
    return buf.getvalue()


def exif_software(value: str) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0131] = value
    return ex


def make_files(realgen: Path, out: Path) -> dict[str, Path]:
    """Every kind of file the provenance tests read, from realgen images, in `out`."""
    gen = sorted((realgen / "dalle-mini").iterdir())[:3]
    photos = sorted((realgen / "real").iterdir())[:4]
    chain = certificate_chain(out / "certs")
    other = certificate_chain(out / "other-certs", name="Someone Else")
    signed = sign_jpeg(jpeg_of(photos[2]), chain)
    files = {
        "a1111.png": png_with_text(gen[0], "parameters", A1111),
        "comfyui.png": png_with_text(gen[1], "prompt", json.dumps(COMFY)),
        "exif-software.jpg": jpeg_of(photos[0], exif=exif_software("Midjourney v6")),
        "xmp-source-type.jpg": jpeg_of(photos[1], xmp=XMP),
        "signed.jpg": signed,
        "signed-then-changed.jpg": change_pixels(signed),
        "manifest-outside.jpg": manifest_pointing_outside(jpeg_of(photos[3]), chain),
        "truncated-jumbf.jpg": truncated_jumbf(signed),
        "plain.png": (gen[2]).read_bytes(),
        "plain.jpg": photos[3].read_bytes(),
    }
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        (images / name).write_bytes(data)
        paths[name] = images / name
    paths["trust"] = chain["root"]
    paths["other-trust"] = other["root"]
    return paths
