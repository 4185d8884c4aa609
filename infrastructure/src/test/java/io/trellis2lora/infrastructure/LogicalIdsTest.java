package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;
import software.amazon.awscdk.App;
import software.amazon.awscdk.Names;
import software.amazon.awscdk.Stack;
import software.constructs.Construct;

/**
 * The stack's sections are constructs, yet a stack deployed before they were keeps its resources: the logical ids
 * (and a security group's description, which CloudFormation cannot change in place) are those it had then.
 */
class LogicalIdsTest {
    /** Logical ids from the template of the stack before the split (they name S3 buckets' and queues' identities). */
    static final List<String> BEFORE = List.of("RequestsBucketB8CB0785", "UploadsBucket5E5E9B64",
            "UploadsBucketNotifications4592A072", "UploadEventsQueue1907A908", "TrainingStateMachine29B8911D",
            "UploadTriggerFunctionSqsEventSourceTrellis2LoraUploadEventsQueue498617C2E3A6A02B",
            "WebhookFunctionSqsEventSourceTrellis2LoraWebhooksQueueB6400C5F22CEE842",
            "ApirequestsPOSTApiPermissionTrellis2LoraApiF4771C0EPOSTrequestsA02702D2",
            "UsagePlanUsagePlanKeyResourceTrellis2LoraDefaultApiKey627B4D62677D7BAB",
            "ApiDeploymentStagev102147F91", "SpotGpuEnvironmentSecurityGroup3B99A08B");

    @Test
    void aDeployedStackKeepsItsResources() {
        for (String id : BEFORE) {
            assertTrue(Synth.json().path("Resources").has(id), id + " is gone from the template");
        }
        assertEquals("Trellis2Lora/SpotGpuEnvironment/SecurityGroup", Synth.json()
                .at("/Resources/SpotGpuEnvironmentSecurityGroup3B99A08B/Properties/GroupDescription").asText());
    }

    @Test
    void theUniqueIdRuleIsTheCdks() {
        App app = new App();
        Stack stack = new Stack(app, "Trellis2Lora");
        Construct a = new Construct(stack, "Api");
        Construct b = new Construct(a, "Default");
        Construct c = new Construct(b, "ApiResource");
        Construct d = new Construct(c, "Resource");
        Construct e = new Construct(d, "x-y.z");
        assertEquals(Names.uniqueId(a), Section.uniqueId(List.of("Trellis2Lora", "Api")));
        assertEquals(Names.uniqueId(e), Section.uniqueId(List.of("Trellis2Lora", "Api", "Default", "ApiResource",
                "Resource", "x-y.z")));
        assertEquals("Api", Section.uniqueId(List.of("Api")));
    }
}
