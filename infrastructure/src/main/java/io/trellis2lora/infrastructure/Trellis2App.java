package io.trellis2lora.infrastructure;

import java.nio.file.Path;
import software.amazon.awscdk.App;
import software.amazon.awscdk.Environment;
import software.amazon.awscdk.StackProps;

/**
 * The CDK app: `npx aws-cdk deploy` (cdk.json runs this through Maven). Context values:
 * <ul>
 *   <li>{@code functionsDir}: where the Lambda modules left target/function.zip (default ../functions);</li>
 *   <li>{@code functionsBucket} (and {@code functionsPrefix}): deploy packages already in S3 instead, at
 *       s3://BUCKET/PREFIXNAME/function.zip;</li>
 *   <li>{@code stateMachineFile}: the ASL file (default ../step-functions/trellis2-lora.asl.json);</li>
 *   <li>{@code stackName}: default Trellis2Lora.</li>
 * </ul>
 * Paths are relative to the working directory, which is infrastructure/ when the cdk CLI runs the app.
 */
public final class Trellis2App {
    private Trellis2App() {
    }

    public static void main(String[] args) {
        App app = new App();
        String bucket = context(app, "functionsBucket", null);
        Trellis2Stack.FunctionCode code = bucket != null
                ? Trellis2Stack.FunctionCode.fromBucket(bucket, context(app, "functionsPrefix", ""))
                : Trellis2Stack.FunctionCode.fromBuildOutput(Path.of(context(app, "functionsDir", "../functions")));
        Path asl = Path.of(context(app, "stateMachineFile", "../step-functions/trellis2-lora.asl.json"));
        String account = System.getenv("CDK_DEFAULT_ACCOUNT");
        String region = System.getenv("CDK_DEFAULT_REGION");
        StackProps.Builder props = StackProps.builder()
                .description("TRELLIS.2 LoRA trainer: API, Step Functions workflow, AWS Batch GPU jobs");
        if (account != null && region != null) {
            props.env(Environment.builder().account(account).region(region).build());
        }
        new Trellis2Stack(app, context(app, "stackName", "Trellis2Lora"), props.build(),
                new Trellis2Stack.Sources(code, asl));
        app.synth();
    }

    private static String context(App app, String key, String fallback) {
        Object v = app.getNode().tryGetContext(key);
        return v == null || v.toString().isBlank() ? fallback : v.toString();
    }
}
