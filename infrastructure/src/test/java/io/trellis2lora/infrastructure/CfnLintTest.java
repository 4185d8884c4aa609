package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** cfn-lint (the pinned one, from requirements.lock) on the synthesised template: no error, no warning. */
class CfnLintTest {
    /**
     * W3005 (a DependsOn that a Ref already implies) is how the CDK writes dependencies of roles and policies; it is
     * harmless and not ours to change.
     */
    static final List<String> IGNORED = List.of("W3005");

    @Test
    void synthesisedTemplatePassesCfnLint() throws Exception {
        Path template = Synth.writeTemplate();
        Tools.Result r = Tools.run(List.of(Tools.program("cfn-lint").toString(),
                "--ignore-checks", String.join(",", IGNORED), "--", template.toString()), Synth.TARGET);
        // cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational; 1 means it could not run.
        assertEquals(0, r.exitCode() & 0b111, "cfn-lint on " + template + ":\n" + r.output());
    }
}
