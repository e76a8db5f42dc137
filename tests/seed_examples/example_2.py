import regalia as wandb

# Run을 초기화합니다.
run = wandb.init(entity = "smle-reg-team-2", project = "zoo_experiment")

# 아티팩트 오브젝트를 생성합니다.
# type 파라미터는 아티팩트 오브젝트와 컬렉션 타입을 모두 지정합니다.
artifact = wandb.Artifact(name = "zoo_dataset", type = "dataset")

# 파일을 아티팩트 오브젝트에 추가합니다.
# 로컬 머신 경로를 지정하세요.
artifact.add_file(local_path="zoo_dataset.pt", name="zoo_dataset")
artifact.add_file(local_path="zoo_labels.pt", name="zoo_labels")

# 아티팩트를 연결할 컬렉션과 레지스트리를 지정합니다.
REGISTRY_NAME = "Model"
COLLECTION_NAME = "Zoo_Classifier_Models"
target_path=f"wandb-registry-{REGISTRY_NAME}/{COLLECTION_NAME}"

# 아티팩트 버전을 컬렉션에 연결합니다.
# 이 artifact 버전에 하나 이상의 에일리어스를 추가합니다.
run.link_artifact(
    artifact = artifact,
    target_path = target_path,
    aliases = ["production-us", "production-eu"]
    )
