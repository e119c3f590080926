"""Bearer-token auth, per-client rate limit, TLS and mutual TLS, message size limits: real servers, real channels."""
import datetime
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from senti.v1 import senti_pb2 as pb
from senti.v1 import senti_pb2_grpc
from senti.server.auth import Authenticator
from senti.server.ratelimit import RateLimiter
from senti.server.logs import JsonFormatter
from senti.server.settings import Settings
from tests.reliability.conftest import sample, serving

TOKEN = "s3cret-token-of-team-a-0123456789"
OTHER = "another-token-of-team-b-987654321"


def predict(channel, text="很好", metadata=(), timeout=30):
    return senti_pb2_grpc.SentiServiceStub(channel).Predict.with_call(
        pb.PredictRequest(texts=[text]), metadata=metadata, timeout=timeout)


def test_auth_requires_a_valid_bearer_token_but_not_for_health(tiny_bundle, caplog):
    caplog.set_level(logging.DEBUG)
    with serving(tiny_bundle, auth_tokens=f"team-a:{TOKEN},team-b:{OTHER}") as (running, client):
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        for metadata in [(), (("authorization", "Bearer wrong-token-000000000000"),),
                         (("authorization", TOKEN),), (("authorization", f"Basic {TOKEN}"),)]:
            with pytest.raises(grpc.RpcError) as err:
                predict(channel, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response, _ = predict(channel, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert len(response.predictions) == 1
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert sample(running.metrics, "senti_rejected_total", {"reason": "unauthenticated"}) == 4
        channel.close()
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "team-a" in logged  # the client's name is logged...
    assert TOKEN not in logged and OTHER not in logged  # ...its secret never


def test_tokens_are_parsed_from_settings_and_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# team b\nteam-b:{OTHER}\n\n")
    settings = Settings(auth_tokens=f"team-a:{TOKEN}", auth_tokens_file=path)
    assert settings.tokens() == {TOKEN: "team-a", OTHER: "team-b"}
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    with pytest.raises(ValueError, match="shorter than 16"):
        Authenticator.parse("x:short")
    auth = Authenticator(settings.tokens())
    assert auth.client([("authorization", f"bearer {OTHER}")]) == "team-b"
    assert auth.client([("authorization", f"Bearer {OTHER}x")]) is None


def test_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # every client has a bucket of its own
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_rate_limit_answers_resource_exhausted_with_a_retry_hint(tiny_bundle):
    with serving(tiny_bundle, auth_tokens=f"team-a:{TOKEN},team-b:{OTHER}", rate_limit_rps=0.01,
                 rate_limit_burst=2) as (running, _):
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        team_a = (("authorization", f"Bearer {TOKEN}"),)
        predict(channel, metadata=team_a)
        predict(channel, metadata=team_a)
        with pytest.raises(grpc.RpcError) as err:
            predict(channel, metadata=team_a)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing = dict(err.value.trailing_metadata())
        assert int(trailing["retry-after-ms"]) > 1000
        assert "rate limit" in err.value.details()
        predict(channel, metadata=(("authorization", f"Bearer {OTHER}"),))  # another client is not affected
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert sample(running.metrics, "senti_rejected_total", {"reason": "rate_limit"}) == 1
        channel.close()


def test_rate_limited_stream_is_slowed_not_refused(tiny_bundle):
    with serving(tiny_bundle, rate_limit_rps=1000, rate_limit_burst=5) as (_, client):
        items = [(str(i), "挺好") for i in range(30)]
        results = list(client.stream(iter(items)))
        assert sorted(int(r.id) for r in results) == list(range(30)) and all(r.ok for r in results)


def test_message_over_the_size_limit_is_resource_exhausted(tiny_bundle):
    with serving(tiny_bundle, max_message_bytes=4096) as (running, client):
        with pytest.raises(grpc.RpcError) as err:
            client.predict(["好" * 3000])  # 9 kB of UTF-8
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.predict("好")[0].label in ("negative", "positive")


# -- TLS -------------------------------------------------------------------------------------------------

def _certificates(tmp_path):
    """A CA, a server certificate for localhost and a client certificate, all signed by the CA (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(name, issuer_name=None, issuer_key=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return key, cert

    def write(stem, key, cert):
        (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key, ca_cert = make("senti-test-ca", ca=True)
    write("ca", ca_key, ca_cert)
    write("server", *make("localhost", ca_cert.subject, ca_key, san="localhost"))
    write("client", *make("team-c", ca_cert.subject, ca_key))
    return {name: (tmp_path / f"{name}.pem", tmp_path / f"{name}.key") for name in ("ca", "server", "client")}


def test_tls_serves_with_the_certificate(tiny_bundle, tmp_path):
    certs = _certificates(tmp_path)
    cert, key = certs["server"]
    credentials = grpc.ssl_channel_credentials(root_certificates=certs["ca"][0].read_bytes())
    with serving(tiny_bundle, tls_cert_file=cert, tls_key_file=key, channel_credentials=credentials,
                 health_port=0) as (running, client):
        assert client.predict("很好")[0].label in ("negative", "positive")
        plain = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        with pytest.raises(grpc.RpcError) as err:
            predict(plain, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Kubernetes' gRPC probes speak plaintext: the health-only port answers them.
        probe = grpc.insecure_channel(f"127.0.0.1:{running.health_port}")
        assert health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        plain.close()
        probe.close()


def test_mutual_tls_requires_a_client_certificate_and_names_the_client(tiny_bundle, tmp_path):
    certs = _certificates(tmp_path)
    cert, key = certs["server"]
    ca = certs["ca"][0].read_bytes()
    client_cert, client_key = certs["client"]
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=client_key.read_bytes(),
                                               certificate_chain=client_cert.read_bytes())
    with serving(tiny_bundle, tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=certs["ca"][0],
                 rate_limit_rps=0.01, rate_limit_burst=1, channel_credentials=credentials) as (running, client):
        assert client.predict("很好")[0].label in ("negative", "positive")
        with pytest.raises(grpc.RpcError) as err:  # the client's certificate names its rate-limit bucket
            client.predict("很好")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        anonymous = grpc.secure_channel(f"127.0.0.1:{running.port}", grpc.ssl_channel_credentials(ca),
                                        options=[("grpc.ssl_target_name_override", "localhost")])
        with pytest.raises(grpc.RpcError) as err:
            predict(anonymous, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        anonymous.close()


def test_settings_refuse_half_a_tls_configuration(tmp_path):
    with pytest.raises(ValueError, match="go together"):
        Settings(tls_cert_file=tmp_path / "a.pem")
    with pytest.raises(ValueError, match="below grpc_workers"):
        Settings(max_concurrent_rpcs=64, grpc_workers=64)
