"""Deterministic prose generators for the sample shards (English, Chinese and a
few other languages). Sentences are built from templates and word lists, so
documents are varied enough that unrelated ones do not look like near-duplicates,
while reading like ordinary prose to the heuristic filters."""
from __future__ import annotations

import random

EN_SUBJ = ["the committee", "our small team", "the village council", "a young engineer", "the museum staff",
           "the river authority", "local farmers", "the orchestra", "a group of students", "the city library",
           "the research station", "the ferry company", "my grandmother", "the night nurses", "the bakery owner",
           "the football club", "a visiting historian", "the school board", "the harbour pilots", "two neighbours"]
EN_VERB = ["discussed", "rebuilt", "described", "measured", "painted", "repaired", "studied", "planned",
           "photographed", "organised", "explained", "welcomed", "collected", "compared", "recorded", "tested",
           "opened", "cleaned", "translated", "celebrated"]
EN_OBJ = ["the old stone bridge", "a new irrigation plan", "the winter schedule", "the history of the canal",
          "several rare manuscripts", "the damaged roof", "the annual flower market", "a map of the coastline",
          "the results of the survey", "the reading programme", "a long letter from abroad", "the northern trail",
          "the price of bread", "the migration of geese", "the hospital garden", "the first electric tram",
          "a collection of folk songs", "the weather records", "the lighthouse lamp", "the community kitchen"]
EN_TAIL = ["before the spring floods arrived", "with great care and patience", "after a long and difficult year",
           "because the town needed it", "during the quiet months of autumn", "while visitors watched from the square",
           "in the presence of the mayor", "for the first time in a century", "with help from volunteers",
           "although the budget was very small", "on a cold morning in January", "so that children could learn from it",
           "as the sun went down over the hills", "despite several delays", "and shared the notes with everyone"]
EN_OPEN = ["In the end,", "Later that week,", "According to the records,", "As many people remember,",
           "For several reasons,", "Even so,", "Meanwhile,", "At first,", "In practice,", "By the summer,"]

ZH_TIME = ["去年春天", "那天早上", "到了秋天", "第二年", "几个月以后", "每逢节日", "当时", "后来", "傍晚时分", "很多年前"]
ZH_WHO = ["村里的老师", "一位年轻的工程师", "图书馆的工作人员", "几位老农民", "市政府", "我的祖父", "医院的护士们",
          "博物馆馆长", "一群大学生", "渡口的船夫", "面包店老板", "当地的历史学家", "两位邻居", "乐团的指挥", "气象站的研究员"]
ZH_WHERE = ["在河边", "在山脚下的小镇上", "在老城区", "在学校的操场上", "在港口附近", "在图书馆里", "在田野中",
            "在市中心的广场上", "在一座旧桥旁", "在博物馆的大厅里", "在东岸", "在森林边缘", "在火车站外", "在邻村",
            "在海边公路旁", "在城墙脚下", "在海湾对面", "在教堂旁边", "在十字路口", "在结冰的湖边", "在北边的庄园",
            "在运河沿岸", "在半山腰", "在旧码头"]
ZH_DO = ["修复了那座古老的石桥", "整理了几百本旧书", "记录了全年的天气变化", "讨论了新的灌溉计划", "举办了一场民歌音乐会",
         "测量了河水的深度", "重新粉刷了教室的墙壁", "收集了许多珍贵的照片", "翻译了一封来自远方的长信",
         "种下了一片新的果树", "研究了运河的历史", "打扫了整条街道", "绘制了一张详细的海岸地图", "开设了免费的阅读课程",
         "检查了灯塔的灯光"]
ZH_TAIL = ["，大家都觉得很有意义。", "，这件事很快就传遍了全城。", "，孩子们也从中学到了不少东西。", "，虽然经费并不充足。",
           "，前后一共花了三个多月。", "，许多游客特地赶来参观。", "，当地报纸还专门做了报道。", "，结果比预想的要好得多。",
           "，并把经验写成了一本小册子。", "，这是几十年来的第一次。", "，镇长亲自到场致辞。", "，工程在年底前顺利完工。",
           "，附近的居民纷纷前来帮忙。", "，老人们说起这件事仍然津津乐道。", "，市里的广播也播出了消息。",
           "，有人专门为此写了一首诗。", "，可惜后来又被洪水冲毁了。", "，第二年又有人照着做了一遍。"]

OTHER = {
    "fr": ["Le conseil municipal a présenté un nouveau projet pour la bibliothèque du quartier.",
           "Les habitants ont participé à une longue réunion sur les transports publics.",
           "Pendant l'été, les enfants apprennent à nager dans le lac près du village.",
           "La boulangerie ouvre très tôt le matin et ferme avant le dîner.",
           "Les historiens ont retrouvé des lettres anciennes dans les archives de la ville.",
           "Le marché du samedi attire des visiteurs de toute la région."],
    "de": ["Der Gemeinderat hat gestern einen neuen Plan für den Bahnhof vorgestellt.",
           "Die Kinder lernen im Sommer schwimmen, wenn das Wasser warm genug ist.",
           "In der alten Mühle befindet sich heute ein kleines Museum für Handwerk.",
           "Viele Familien fahren am Wochenende mit dem Fahrrad an den See.",
           "Die Bibliothek bietet jeden Donnerstag eine Lesestunde für ältere Menschen an.",
           "Nach dem Sturm mussten mehrere Bäume im Stadtpark gefällt werden."],
    "es": ["El ayuntamiento presentó ayer un nuevo plan para el mercado central.",
           "Durante el verano, los niños aprenden a nadar en el río cerca del pueblo.",
           "La biblioteca municipal organiza talleres de lectura todos los jueves.",
           "Los agricultores esperan que las lluvias lleguen antes de la cosecha.",
           "El museo de la ciudad recibió una colección de fotografías antiguas.",
           "Muchas familias pasean por el parque los domingos por la tarde."],
    "ru": ["Городской совет вчера представил новый план реконструкции вокзала.",
           "Летом дети учатся плавать в озере недалеко от деревни.",
           "В старой мельнице теперь находится небольшой музей ремёсел.",
           "Библиотека каждую неделю проводит встречи для любителей чтения.",
           "После сильной бури в парке пришлось убрать несколько деревьев.",
           "Многие жители ездят на рынок по субботам рано утром."],
    "ja": ["昨日、市役所は駅前の広場を改修する新しい計画を発表しました。",
           "夏になると、子どもたちは村の近くの川で泳ぎを習います。",
           "古い水車小屋は、今では小さな手工芸の博物館になっています。",
           "図書館では毎週木曜日に高齢者のための読書会が開かれています。",
           "嵐のあと、公園ではいくつかの木を切らなければなりませんでした。",
           "週末になると、多くの家族が自転車で湖まで出かけます。"],
}


EN_ADJ = ["old", "narrow", "wooden", "famous", "forgotten", "crowded", "quiet", "northern", "damaged", "modest",
          "expensive", "temporary", "colourful", "ancient", "unusual", "popular", "fragile", "enormous", "tiny",
          "public", "private", "seasonal", "local", "rural", "coastal", "medieval", "modern", "heavy", "bright", "green"]
EN_NOUN = ["bridge", "canal", "archive", "garden", "market", "railway", "lighthouse", "orchard", "library", "harbour",
           "school", "kitchen", "chapel", "bakery", "windmill", "greenhouse", "theatre", "museum", "hospital", "mill",
           "ferry", "tram line", "fountain", "bell tower", "warehouse", "sawmill", "observatory", "clinic", "vineyard",
           "reservoir"]
EN_PLACE = ["near the harbour", "behind the town hall", "on the eastern shore", "at the edge of the forest",
            "in the old quarter", "beside the river", "on the hill above the valley", "outside the station",
            "in a nearby village", "along the coast road", "under the castle walls", "across the bay",
            "next to the cathedral", "at the crossroads", "in the lower town", "by the frozen lake",
            "on the northern estate", "at the foot of the mountain", "in the market square", "along the canal"]
EN_MONTH = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
            "November", "December"]
EN_REASON = ["because the winters had become harsher", "since nobody else had the tools", "after a petition from parents",
             "when the old one finally collapsed", "so that travellers could rest", "although few people believed in it",
             "while the council argued about money", "once the harvest was over", "before the tourists arrived",
             "as the population kept growing", "after a fire destroyed the records", "because a storm had flooded the cellars"]


def _year(r: random.Random) -> str:
    return str(r.randint(1820, 2023))


def en_sentence(r: random.Random) -> str:
    subj, verb = r.choice(EN_SUBJ), r.choice(EN_VERB)
    thing = f"the {r.choice(EN_ADJ)} {r.choice(EN_NOUN)}"
    t = r.randrange(6)
    if t == 0:
        s = f"{subj} {verb} {thing} {r.choice(EN_PLACE)} in {r.choice(EN_MONTH)} {_year(r)}."
    elif t == 1:
        s = f"In {_year(r)}, {subj} {verb} {thing}, {r.choice(EN_REASON)}."
    elif t == 2:
        s = f"It was {subj} who {verb} {thing} {r.choice(EN_PLACE)}."
    elif t == 3:
        s = f"{subj} later said that {thing} {r.choice(EN_PLACE)} had cost {r.randint(2, 90)} thousand pounds."
    elif t == 4:
        s = f"{r.choice(EN_OPEN)} {subj} {verb} {thing} {r.choice(EN_REASON)}."
    else:
        s = (f"{subj} and {r.choice(EN_SUBJ)} {verb} {thing} together, and {r.randint(3, 400)} people "
             f"came to see it {r.choice(EN_PLACE)}.")
    return s[0].upper() + s[1:]


def en_paragraph(r: random.Random, n: int | None = None) -> str:
    return " ".join(en_sentence(r) for _ in range(n or r.randint(3, 6)))


def en_document(r: random.Random, paragraphs: int | None = None) -> str:
    return "\n\n".join(en_paragraph(r) for _ in range(paragraphs or r.randint(3, 7)))


ZH_ADJ = ["古老的", "狭窄的", "木制的", "著名的", "被遗忘的", "热闹的", "安静的", "北边的", "破旧的", "简朴的", "崭新的",
          "临时的", "色彩鲜艳的", "少见的", "受欢迎的", "巨大的", "小小的", "公共的", "沿海的", "现代的"]
ZH_NOUN = ["石桥", "运河", "档案馆", "花园", "集市", "铁路", "灯塔", "果园", "图书馆", "码头", "学校", "厨房", "祠堂",
           "面包房", "风车", "温室", "戏院", "博物馆", "医院", "磨坊", "渡船", "钟楼", "仓库", "天文台", "诊所", "葡萄园",
           "水库", "茶馆", "书院", "牌坊"]
ZH_VERB = ["修复了", "整理了", "记录了", "讨论了", "重建了", "测量了", "粉刷了", "参观了", "翻新了", "保护了", "拍摄了",
           "研究了", "打扫了", "扩建了", "介绍了"]
ZH_REASON = ["因为冬天越来越冷", "因为别人都没有合适的工具", "这是家长们联名提出的请求", "原来的那座终于倒塌了",
             "好让过路的人可以歇歇脚", "尽管当时很少有人相信", "当时议会还在为经费争论不休", "那时秋收刚刚结束",
             "赶在游客到来之前", "随着人口不断增加", "一场大火烧毁了原来的记录", "一场暴雨淹没了地窖"]


def zh_sentence(r: random.Random) -> str:
    who, verb = r.choice(ZH_WHO), r.choice(ZH_VERB)
    thing = f"{r.choice(ZH_ADJ)}{r.choice(ZH_NOUN)}"
    t = r.randrange(5)
    if t == 0:
        return f"{r.randint(1850, 2023)}年{r.randint(1, 12)}月，{who}{r.choice(ZH_WHERE)}{verb}那座{thing}{r.choice(ZH_TAIL)}"
    if t == 1:
        return f"{r.choice(ZH_TIME)}，{who}{verb}{thing}，{r.choice(ZH_REASON)}。"
    if t == 2:
        return f"据说{r.choice(ZH_WHERE)}的{thing}是{who}在{r.randint(1850, 2023)}年{verb[:-1]}的，前后花了{r.randint(2, 90)}万元。"
    if t == 3:
        return f"{who}和{r.choice(ZH_WHO)}一起{verb}{thing}，当天有{r.randint(3, 400)}人前来观看。"
    return f"{r.choice(ZH_TIME)}，{who}{r.choice(ZH_WHERE)}{r.choice(ZH_DO)}{r.choice(ZH_TAIL)}"


def zh_paragraph(r: random.Random, n: int | None = None) -> str:
    return "".join(zh_sentence(r) for _ in range(n or r.randint(3, 6)))


def zh_document(r: random.Random, paragraphs: int | None = None) -> str:
    return "\n\n".join(zh_paragraph(r) for _ in range(paragraphs or r.randint(3, 7)))


def other_document(r: random.Random, lang: str) -> str:
    """Each sentence at most once: a page that repeats itself is (rightly) a repetition reject."""
    sents = r.sample(OTHER[lang], len(OTHER[lang]))
    cut = r.randint(2, len(sents) - 2)
    sep = "" if lang == "ja" else " "
    return sep.join(sents[:cut]) + "\n\n" + sep.join(sents[cut:])


def near_copy(r: random.Random, text: str, lang: str, rate: float = 0.03) -> str:
    """A near-duplicate: a few words changed and a sentence appended, keeping
    Jaccard similarity of 5-gram shingles well above 0.8."""
    if lang in ("zh", "ja"):
        chars = list(text)
        for _ in range(max(1, int(len(chars) * rate / 3))):
            i = r.randrange(len(chars))
            if chars[i] not in "，。\n":
                chars[i] = r.choice("的了在是有和人这中大")
        return "".join(chars) + "（转载请注明出处）"
    words = text.split(" ")
    for _ in range(max(1, int(len(words) * rate / 3))):
        i = r.randrange(len(words))
        words[i] = r.choice(["very", "quite", "rather", "really"])
    return " ".join(words) + " Thanks for reading."


EN_SPAM = ["cheap casino bonus", "best online slots", "free spins today", "win real money now", "crypto profit guaranteed",
           "buy followers cheap", "casino casino casino"]
ZH_SPAM = ["澳门赌场", "注册送彩金", "在线娱乐", "百家乐", "时时彩", "六合彩开奖", "真人视讯", "免费试玩"]
BOILER = ["Home", "About us", "Contact", "Login", "Register", "Privacy policy", "Terms of use", "Cookie settings",
          "Sitemap", "Subscribe to our newsletter", "Follow us", "Share", "Next page", "Previous page", "Search"]


def spam_document(r: random.Random, lang: str) -> str:
    words = EN_SPAM if lang == "en" else ZH_SPAM
    lines = []
    for _ in range(r.randint(15, 30)):
        lines.append((" " if lang == "en" else "").join(r.choice(words) for _ in range(r.randint(3, 6))))
    return "\n".join(lines)


def boilerplate_document(r: random.Random) -> str:
    return "\n".join(r.choice(BOILER) for _ in range(r.randint(20, 40)))
