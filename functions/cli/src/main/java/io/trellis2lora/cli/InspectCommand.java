package io.trellis2lora.cli;

import io.trellis2lora.core.Json;
import io.trellis2lora.core.net.AddressPolicy;
import io.trellis2lora.core.net.SafeHttp;
import io.trellis2lora.core.zip.TempFileStager;
import io.trellis2lora.core.zip.ZipInspection;
import io.trellis2lora.core.zip.ZipInspector;
import java.io.PrintStream;
import java.util.List;
import java.util.Set;

/** {@code inspect ARCHIVE}: what the archive holds, read by ranged reads as the API reads it, as JSON on stdout. */
final class InspectCommand implements Command {
    @Override
    public String name() {
        return "inspect";
    }

    @Override
    public String usage() {
        return """
                ARCHIVE [--resolution 512|1024]
                  what the archive holds (kind, objects, sizes) as JSON, or why it is refused""";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        Args a = Args.parse(args, Set.of("--resolution"), Set.of());
        String zip = a.only("ARCHIVE");
        Integer resolution = null;
        if (a.has("--resolution")) {
            try {
                resolution = Integer.parseInt(a.options.get("--resolution"));
            } catch (NumberFormatException e) {
                throw new UsageException("--resolution takes 512 or 1024");
            }
        }
        try (SafeHttp http = new SafeHttp(AddressPolicy.fromEnvironment(System::getenv));
                var opened = EstimateCommand.opener(zip, http).open(zip, new TempFileStager())) {
            ZipInspection inspection = ZipInspector.inspect(opened.source(), resolution);
            out.println(Json.pretty(inspection));
            return 0;
        }
    }
}
