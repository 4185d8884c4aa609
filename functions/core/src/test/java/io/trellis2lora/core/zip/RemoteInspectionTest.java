package io.trellis2lora.core.zip;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3Uri;
import io.trellis2lora.core.testing.Moto;
import io.trellis2lora.core.testing.TestHttpsServer;
import io.trellis2lora.core.testing.TestZips;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.services.s3.S3Client;

/** Inspection of archives in S3 (moto) and behind https (a real TLS server on loopback), and the SSRF guard. */
@ExtendWith(Moto.class)
class RemoteInspectionTest {
    static S3Client s3;
    static String bucket;
    static TestHttpsServer server;
    static SafeHttp loopbackAllowed;
    static byte[] real20;

    @BeforeAll
    static void setUp(@TempDir Path tmp) throws Exception {
        s3 = Moto.s3();
        bucket = Moto.newBucket(s3);
        server = new TestHttpsServer();
        loopbackAllowed = new SafeHttp(new AddressPolicy(true, false), TestHttpsServer.clientContext());
        real20 = Files.readAllBytes(TestZips.realAssetsZip(tmp.resolve("r.zip"), 20));
    }

    @AfterAll
    static void tearDown() throws Exception {
        server.close();
        loopbackAllowed.close();
        s3.close();
    }

    @Test
    void s3ArchiveIsInspectedWithRangedGets() throws Exception {
        s3.putObject(b -> b.bucket(bucket).key("in/real.zip"), RequestBody.fromBytes(real20));
        try (var src = new S3RangeSource(s3, new S3Uri(bucket, "in/real.zip"))) {
            ZipInspection i = ZipInspector.inspect(src, 512);
            assertEquals(20, i.objects());
            assertEquals(real20.length, i.archiveBytes());
            assertTrue(src.readCount() <= 3, "reads: " + src.readCount());
        }
        var e = assertThrows(InputRefusedException.class,
                () -> new S3RangeSource(s3, new S3Uri(bucket, "in/missing.zip")));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void zip64ArchiveInS3Works() throws Exception {
        byte[] z = TestZips.forge(List.of(TestZips.Forged.file("a/b.glb", "x")), true);
        s3.putObject(b -> b.bucket(bucket).key("in/z64.zip"), RequestBody.fromBytes(z));
        try (var src = new S3RangeSource(s3, new S3Uri(bucket, "in/z64.zip"))) {
            ZipInspection i = ZipInspector.inspect(src, null);
            assertTrue(i.zip64());
            assertEquals(1, i.objects());
        }
    }

    @Test
    void httpsArchiveIsInspectedWithRangeRequestsWithoutDownloadingIt() throws Exception {
        // Pad the archive with a large stored entry so that a download would show in the byte count.
        byte[] big = TestZips.forge(List.of(TestZips.Forged.file("pad.bin", new byte[3 << 20]),
                TestZips.Forged.file("models/chair.glb", "x")), false);
        String url = server.serveRanged("/big.zip", big);
        long before = server.bytesSent.get();
        var opened = new ArchiveOpener(null, loopbackAllowed).open(url, new TempFileStager());
        ZipInspection i = ZipInspector.inspect(opened.source(), null);
        assertEquals(1, i.objects());
        assertFalse(opened.staged());
        assertEquals(url, opened.inputUri());
        assertTrue(server.bytesSent.get() - before < 100_000, "sent " + (server.bytesSent.get() - before));
    }

    @Test
    void serverIgnoringRangeGetsTheArchiveStagedInTheRequestsBucket() throws Exception {
        String url = server.serveWhole("/norange.zip", real20);
        var opened = new ArchiveOpener(s3, loopbackAllowed).open(url,
                new S3Stager(s3, bucket, "requests/r-1/input.zip"));
        assertTrue(opened.staged());
        assertEquals("s3://" + bucket + "/requests/r-1/input.zip", opened.inputUri());
        assertEquals(20, ZipInspector.inspect(opened.source(), 512).objects());
        assertEquals(real20.length, s3.headObject(b -> b.bucket(bucket).key("requests/r-1/input.zip"))
                .contentLength());
    }

    @Test
    void stagingUsesMultipartUploadForLargeArchives() throws Exception {
        byte[] big = TestZips.forge(List.of(TestZips.Forged.file("pad.bin", new byte[S3Stager.PART + 12345]),
                TestZips.Forged.file("x.obj", "v 0 0 0")), false);
        String uri = new S3Stager(s3, bucket, "requests/r-2/input.zip").stage(
                new java.io.ByteArrayInputStream(big), "test");
        try (var src = new S3RangeSource(s3, S3Uri.parse(uri))) {
            assertEquals(big.length, src.size());
            assertEquals(1, ZipInspector.inspect(src, null).objects());
        }
    }

    @Test
    void stagingStopsAtTheSizeLimitAndLeavesNothingBehind() {
        byte[] big = new byte[S3Stager.PART * 2 + 10];
        var stager = new S3Stager(s3, bucket, "requests/r-3/input.zip", S3Stager.PART + 1);
        var e = assertThrows(InputRefusedException.class,
                () -> stager.stage(new java.io.ByteArrayInputStream(big), "https://example.com/big.zip"));
        assertTrue(e.getMessage().contains("over the 16 MB limit"), e.getMessage());
        assertEquals(0, s3.listMultipartUploads(b -> b.bucket(bucket)).uploads().size());
        assertEquals(0, s3.listObjectsV2(b -> b.bucket(bucket).prefix("requests/r-3/")).keyCount());
    }

    @Test
    void loopbackIsRefusedUnlessConfigurationAllowsIt() throws Exception {
        String url = server.serveRanged("/ok.zip", real20);
        try (SafeHttp strict = new SafeHttp(AddressPolicy.PUBLIC_ONLY, TestHttpsServer.clientContext())) {
            long before = server.requests.get();
            var e = assertThrows(InputRefusedException.class,
                    () -> new ArchiveOpener(null, strict).open(url, new TempFileStager()));
            assertTrue(e.getMessage().contains("127.0.0.1") && e.getMessage().contains("loopback"), e.getMessage());
            assertEquals(before, server.requests.get(), "no connection may be made");
            var local = assertThrows(InputRefusedException.class,
                    () -> strict.get("https://localhost:" + url.split(":")[2], null));
            assertTrue(local.getMessage().contains("loopback"), local.getMessage());
        }
    }

    @Test
    void privateLinkLocalAndMetadataAddressesAreRefusedWithoutConnecting() {
        for (String host : List.of("10.0.0.1", "192.168.1.10", "172.16.5.5", "169.254.169.254", "[fd00:ec2::254]",
                "[::ffff:127.0.0.1]", "100.64.1.1", "0.0.0.0", "[::1]", "[fe80::1]")) {
            var e = assertThrows(InputRefusedException.class,
                    () -> loopbackAllowed.get("https://" + host + "/a.zip", null), host);
            boolean loop = host.contains("127.0.0.1") || host.equals("[::1]");
            if (!loop) {
                assertTrue(e.getMessage().contains("which the service does not fetch"), host + ": " + e.getMessage());
            }
        }
    }

    @Test
    void redirectsAreCheckedAgainAtEveryHop() throws Exception {
        String toMetadata = server.redirect("/r1", "https://169.254.169.254/latest/meta-data/");
        var e = assertThrows(InputRefusedException.class,
                () -> new ArchiveOpener(null, loopbackAllowed).open(toMetadata, new TempFileStager()));
        assertTrue(e.getMessage().contains("169.254.169.254") && e.getMessage().contains("metadata"), e.getMessage());

        String toHttp = server.redirect("/r2", "http://example.com/a.zip");
        var e2 = assertThrows(InputRefusedException.class,
                () -> new ArchiveOpener(null, loopbackAllowed).open(toHttp, new TempFileStager()));
        assertTrue(e2.getMessage().contains("not https"), e2.getMessage());

        String target = server.serveRanged("/target.zip", real20);
        String hop = server.redirect("/r3", target);
        var opened = new ArchiveOpener(null, loopbackAllowed).open(hop, new TempFileStager());
        assertEquals(20, ZipInspector.inspect(opened.source(), null).objects());

        server.redirect("/loop", server.url("/loop"));
        var e3 = assertThrows(InputRefusedException.class,
                () -> loopbackAllowed.get(server.url("/loop"), null));
        assertTrue(e3.getMessage().contains("redirects more than"), e3.getMessage());
    }

    @Test
    void missingUrlIsRefusedWithItsStatus() {
        var e = assertThrows(InputRefusedException.class, () -> new ArchiveOpener(null, loopbackAllowed)
                .open(server.url("/nothing.zip?X-Amz-Signature=secret"), new TempFileStager()));
        assertTrue(e.getMessage().contains("HTTP 404"), e.getMessage());
        assertFalse(e.getMessage().contains("secret"), e.getMessage());
    }
}
