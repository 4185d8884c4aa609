package io.trellis2lora.core.cli;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3Uri;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.TempFileStager;
import io.trellis2lora.core.zip.ZipInspection;
import io.trellis2lora.core.zip.ZipInspector;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * The local command line (bin/trellis2-lora): {@code inspect ZIP} and {@code estimate REQUEST.json}, printing
 * JSON on stdout. Exit 0 on success, 2 when the input is refused (every reason on stderr, one per line), 1 on
 * anything else.
 */
public final class Main {
    static final String USAGE = """
            usage: trellis2-lora inspect ZIP [--resolution 512|1024]
                   trellis2-lora estimate REQUEST.json
            ZIP and data_url may be a local path, an https:// URL or an s3:// URI; a relative data_url is read
            relative to the request file's folder.""";

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    public static int run(String[] args, PrintStream out, PrintStream err) {
        try {
            if (args.length == 0 || args[0].equals("-h") || args[0].equals("--help")) {
                (args.length == 0 ? err : out).println(USAGE);
                return args.length == 0 ? 2 : 0;
            }
            return switch (args[0]) {
                case "inspect" -> inspect(args, out);
                case "estimate" -> estimate(args, out);
                default -> {
                    err.println("unknown command '" + args[0] + "'");
                    err.println(USAGE);
                    yield 2;
                }
            };
        } catch (InputRefusedException e) {
            e.problems().forEach(err::println);
            return 2;
        } catch (UsageException e) {
            err.println(e.getMessage());
            err.println(USAGE);
            return 2;
        } catch (Exception e) {
            err.println("error: " + e);
            return 1;
        }
    }

    private static int inspect(String[] args, PrintStream out) throws IOException {
        Integer resolution = null;
        String zip = null;
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--resolution") && i + 1 < args.length) {
                try {
                    resolution = Integer.parseInt(args[++i]);
                } catch (NumberFormatException e) {
                    throw new UsageException("--resolution takes 512 or 1024");
                }
            } else if (zip == null && !args[i].startsWith("--")) {
                zip = args[i];
            } else {
                throw new UsageException("unexpected argument '" + args[i] + "'");
            }
        }
        if (zip == null) {
            throw new UsageException("inspect needs a ZIP");
        }
        try (SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv));
                var opened = opener(zip, http).open(zip, new TempFileStager())) {
            ZipInspection inspection = ZipInspector.inspect(opened.source(), resolution);
            out.println(Json.pretty(inspection));
            return 0;
        }
    }

    private static int estimate(String[] args, PrintStream out) throws IOException {
        if (args.length != 2) {
            throw new UsageException("estimate needs exactly one REQUEST.json");
        }
        Path file = Path.of(args[1]);
        String body;
        try {
            body = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new InputRefusedException("request file " + file + " does not exist");
        }
        TrainingRequest request = new RequestValidator(RequestValidator.Mode.LOCAL).parse(body);
        String url = request.dataUrl();
        if (!url.toLowerCase(Locale.ROOT).matches("^[a-z][a-z0-9+.-]*://.*") && !Path.of(url).isAbsolute()) {
            Path dir = file.toAbsolutePath().getParent();
            request = request.withDataUrl(dir.resolve(url).normalize().toString());
        }
        try (SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv))) {
            var stager = new TempFileStager();
            Assessment a = Assessment.of(request, opener(request.dataUrl(), http), stager);
            if (!a.inputUri().equals(a.request().dataUrl())) {
                stager.discard(a.inputUri());
            }
            out.println(Json.pretty(new Assessment(a.request(), null, a.inspection(), a.estimate())));
            return 0;
        }
    }

    private static ArchiveOpener opener(String url, SafeHttp http) {
        return new ArchiveOpener(S3Uri.isS3(url) ? S3Client.create() : null, http);
    }

    static final class UsageException extends RuntimeException {
        UsageException(String message) {
            super(message);
        }
    }
}
