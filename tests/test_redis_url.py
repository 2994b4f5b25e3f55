"""--redis URLs: what each form means, and one clear complaint for each mistake."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tinytcp.cluster.redis import RedisAddress, parse_url


class ParseUrlTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parse_url("redis://127.0.0.1"), RedisAddress(host="127.0.0.1", port=6379, db=0))
        self.assertEqual(
            parse_url("redis://:s%40cret@cache.example:6380/2"),
            RedisAddress(host="cache.example", port=6380, db=2, password="s@cret"),
        )
        self.assertEqual(
            parse_url("rediss://app:pw@[::1]:6390/1?cafile=/etc/ca.pem"),
            RedisAddress(host="::1", port=6390, db=1, username="app", password="pw", tls=True, cafile="/etc/ca.pem"),
        )
        self.assertEqual(
            parse_url("unix:///run/redis/redis.sock?db=3"),
            RedisAddress(host=None, port=0, path="/run/redis/redis.sock", db=3),
        )

    def test_describe_hides_the_password(self) -> None:
        self.assertEqual(parse_url("redis://:pw@10.0.0.5:7000/4").describe(), "redis://10.0.0.5:7000/4")
        self.assertEqual(parse_url("rediss://u:pw@[::1]/0").describe(), "rediss://[::1]:6379/0")
        self.assertEqual(parse_url("unix://:pw@/tmp/r.sock").describe(), "unix:///tmp/r.sock?db=0")

    def test_mistakes(self) -> None:
        for url, why in (
            ("http://127.0.0.1", "expected redis://"),
            ("127.0.0.1:6379", "expected redis://"),
            ("redis://127.0.0.1:0x10", "port"),
            ("redis://127.0.0.1/zero", "database"),
            ("redis:///0", "no host"),
            ("unix://", "no socket path"),
            ("redis://h/0?timeout=1", "unknown parameter 'timeout'"),
        ):
            with self.assertRaises(ValueError) as raised:
                parse_url(url)
            self.assertIn(why, str(raised.exception), url)
