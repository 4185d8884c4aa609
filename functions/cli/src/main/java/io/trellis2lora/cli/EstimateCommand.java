package io.trellis2lora.cli;

import io.trellis2lora.core.Json;
import io.trellis2lora.core.api.Assessment;
import io.trellis2lora.core.model.TrainingRequest;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.storage.S3Uri;
import io.trellis2lora.core.validation.RequestFiles;
import io.trellis2lora.core.validation.RequestValidator;
import io.trellis2lora.core.zip.ArchiveOpener;
import io.trellis2lora.core.zip.TempFileStager;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import software.amazon.awssdk.services.s3.S3Client;

/** {@code estimate REQUEST.json}: the same checks as a submit and the itemised price, as JSON on stdout. */
final class EstimateCommand implements Command {
    @Override
    public String name() {
        return "estimate";
    }

    @Override
    public String usage() {
        return """
                REQUEST.json
                  the itemised price of a training request (the hosted endpoint's fields), or why it is refused""";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Path file = Path.of(Args.parse(args, Set.of(), Set.of()).only("REQUEST.json"));
        TrainingRequest request = new RequestValidator(RequestValidator.Mode.LOCAL).parse(RequestFiles.read(file));
        request = request.withDataUrl(RequestFiles.resolve(file, request.dataUrl()));
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

    static ArchiveOpener opener(String url, SafeHttp http) {
        return new ArchiveOpener(S3Uri.isS3(url) ? S3Client.create() : null, http);
    }
}
